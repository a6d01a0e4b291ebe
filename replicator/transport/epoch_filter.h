#pragma once
// The epoch rule, in one place (docs/replication-link.md "After the handshake"): every
// envelope carries its sender's epoch; one below the floor is stale, dropped and logged, never
// delivered. The floor is the highest of the peer's handshake epoch, the highest epoch already
// delivered from this peer (a sender's epochs only grow) and, when the link's owner supplies
// it (LinkIdentity::current_epoch), the owner's own current epoch (a message from an epoch
// this node has moved past is refused).
#include <atomic>
#include <cstdint>
#include <functional>
#include <string_view>

#include "proto/replication.pb.h"

namespace tandem::replicator {

class EpochFilter {
 public:
  // At authentication: the epoch the peer presented, and the owner's epoch source (may be empty).
  void start(uint64_t peer_epoch, std::function<uint64_t()> current_epoch) {
    floor_ = peer_epoch;
    current_epoch_ = std::move(current_epoch);
  }

  // True to deliver `envelope`. Otherwise it is counted and logged (the first 10 drops, then
  // one in 1000), naming `peer_address`. One thread at a time (the link's I/O thread).
  bool admit(const wire::Envelope& envelope, std::string_view peer_address);

  uint64_t dropped() const { return dropped_.load(); }  // any thread

 private:
  uint64_t floor_ = 0;
  std::function<uint64_t()> current_epoch_;
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace tandem::replicator
