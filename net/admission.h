// Admission of unauthenticated connections on a listener: per-address and global caps, an
// optional allow-list of peer addresses, and a growing pause after accept errors. Every TCP
// listener of Tandem (the replication link, the second heartbeat path, the witness, the TCP
// console) holds one slot per connection from accept until the peer has proved itself (or, for
// the console, for the connection's life), so a flood of idle connections from one address
// cannot keep a real peer from another out (docs/security.md).
#pragma once

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace tandem::net {

struct AdmissionLimits {
  size_t max_pending = 64;              // unauthenticated connections at once, all addresses
  size_t max_pending_per_address = 8;   // from any one address
  std::vector<std::string> allow;       // numeric peer addresses; empty = any address
};

class Admission {
  struct State;

 public:
  // Throws std::invalid_argument for a zero cap or an allow entry that is not a numeric address.
  explicit Admission(AdmissionLimits limits);

  // One admitted connection; its slot is freed by release() or on destruction. Movable.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept;
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { release(); }
    void release();
    explicit operator bool() const { return state_ != nullptr; }

   private:
    friend class Admission;
    Slot(std::shared_ptr<State> state, boost::asio::ip::address from) : state_(std::move(state)), from_(from) {}
    std::shared_ptr<State> state_;
    boost::asio::ip::address from_;
  };

  // A slot for a connection from `from`, or nullopt with `why` set ("X is not in the allow-list",
  // "too many unauthenticated connections from X (N)", "too many unauthenticated connections
  // (N)"). Thread-safe.
  std::optional<Slot> admit(const boost::asio::ip::address& from, std::string& why);

  size_t pending() const;
  uint64_t refused() const;

 private:
  std::shared_ptr<State> state_;
};

// The pause before the next accept after an accept error (out of file descriptors, say): 10 ms,
// doubling to 1 s; reset by a successful accept. A listener never spins on a failing accept.
class AcceptBackoff {
 public:
  std::chrono::milliseconds next() {
    const auto pause = pause_;
    pause_ = std::min(pause_ * 2, std::chrono::milliseconds(1000));
    return pause;
  }
  void reset() { pause_ = std::chrono::milliseconds(10); }

 private:
  std::chrono::milliseconds pause_{10};
};

}  // namespace tandem::net
