#pragma once
// The part every threaded backend shares: frames from the backend's I/O thread wait in a
// bounded queue until the machine's World takes them (receive/wait_frame, on the VM thread).
// A queue that is full drops the newest frame, as a NIC with a full ring would; TCP recovers.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <vector>

#include "vmm-hooks/net_port.h"

namespace tandem::hostnet {

class QueuePort : public hooks::NetPort {
 public:
  static constexpr size_t kMaxQueuedFrames = 512;

  bool receive(std::vector<uint8_t>& frame) override;
  bool wait_frame(std::chrono::nanoseconds timeout) override;
  uint64_t rx_dropped() const;

 protected:
  // From the backend's I/O thread.
  void deliver(std::span<const uint8_t> frame);

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::vector<uint8_t>> frames_;
  uint64_t dropped_ = 0;
};

}  // namespace tandem::hostnet
