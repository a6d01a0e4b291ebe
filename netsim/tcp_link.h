// TCP proxy link: every accepted connection gets its own upstream connection and two pumps
// (up and down) that move bytes independently. A pump with nothing to do to the bytes
// (no delay, cap, corruption, slicing, hold) moves them with splice(2) through a pipe and
// never copies them into user space; otherwise it reads into a queue of timestamped chunks
// that a writer releases by the policy.
#pragma once

#include <memory>
#include <unordered_map>

#include "netsim/link.h"
#include "netsim/token_bucket.h"

namespace netsim {

class TcpLink final : public Link {
 public:
  TcpLink(asio::io_context& io, LinkConfig config, uint64_t simulator_seed, EventLog& events);
  ~TcpLink() override;

  void start() override;
  void stop() override;
  uint16_t listen_port() const override { return port_; }
  void reset_connections() override;

 private:
  class Connection;
  friend class Connection;

  void policy_changed(const LinkPolicy& before) override;
  void reseeded() override { next_stream_ = 0; }
  void open_acceptor();
  asio::awaitable<void> accept_loop(uint64_t generation);
  void connection_closed(uint64_t index);
  TokenBucket& bucket(Direction d) { return d == Direction::Down ? down_bucket_ : up_bucket_; }

  asio::ip::tcp::acceptor acceptor_;
  asio::ip::tcp::endpoint listen_endpoint_;
  asio::ip::tcp::endpoint target_endpoint_;
  uint16_t port_ = 0;
  bool running_ = false;
  uint64_t acceptor_generation_ = 0;
  uint64_t next_connection_ = 0;
  uint64_t next_stream_ = 0;
  std::unordered_map<uint64_t, std::shared_ptr<Connection>> connections_;
  TokenBucket up_bucket_, down_bucket_;
};

}  // namespace netsim
