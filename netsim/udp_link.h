// UDP proxy link. Each client address gets a session: an upstream socket connected to the
// target, so the target's replies find their way back. Every datagram is judged on its own
// (loss, corruption, duplication, reordering, delay) by its direction's random stream, in
// arrival order, so a run with the same seed and the same datagrams makes the same choices.
#pragma once

#include <map>
#include <memory>
#include <vector>

#include "netsim/link.h"
#include "netsim/token_bucket.h"

namespace netsim {

class UdpLink final : public Link {
 public:
  UdpLink(asio::io_context& io, LinkConfig config, uint64_t simulator_seed, EventLog& events);
  ~UdpLink() override;

  void start() override;
  void stop() override;
  uint16_t listen_port() const override { return port_; }
  // UDP has no connections to reset: forgets every session (their upstream sockets close).
  void reset_connections() override;

 private:
  struct Session {
    explicit Session(asio::io_context& io) : upstream(io) {}
    asio::ip::udp::endpoint client;
    asio::ip::udp::socket upstream;
    Clock::time_point last_active;
  };
  struct Datagram {
    Clock::time_point due;
    uint64_t sequence = 0;  // breaks ties so equal due times keep arrival order
    std::vector<uint8_t> data;
    std::shared_ptr<Session> session;
  };
  struct Lane {
    Lane(Direction d, asio::io_context& io) : direction(d), wake(io) {}
    Direction direction;
    Rng rng;
    bool bad_state = false;  // Gilbert-Elliott
    std::vector<Datagram> heap;  // min-heap on (due, sequence)
    asio::steady_timer wake;
    TokenBucket bucket;
    uint64_t sequence = 0;
  };

  void policy_changed(const LinkPolicy& before) override;
  void reseeded() override;
  asio::awaitable<void> receive_from_clients();
  asio::awaitable<void> receive_from_target(std::shared_ptr<Session> session);
  asio::awaitable<void> deliver(Lane& lane);
  asio::awaitable<void> reap_idle_sessions();
  std::shared_ptr<Session> session_for(const asio::ip::udp::endpoint& client);
  void admit(Lane& lane, const uint8_t* data, size_t size, const std::shared_ptr<Session>& session);
  void push(Lane& lane, Datagram datagram);
  void send(Lane& lane, const Datagram& datagram);
  void drop(Lane& lane, size_t size);

  asio::ip::udp::socket socket_;
  asio::ip::udp::endpoint target_;
  uint16_t port_ = 0;
  bool running_ = false;
  std::map<asio::ip::udp::endpoint, std::shared_ptr<Session>> sessions_;
  Lane up_;
  Lane down_;
  asio::steady_timer reap_timer_;
};

}  // namespace netsim
