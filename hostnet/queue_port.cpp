#include "hostnet/queue_port.h"

namespace tandem::hostnet {

bool QueuePort::receive(std::vector<uint8_t>& frame) {
  std::lock_guard lock(mutex_);
  if (frames_.empty()) return false;
  frame = std::move(frames_.front());
  frames_.pop_front();
  return true;
}

bool QueuePort::wait_frame(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return !frames_.empty(); });
}

uint64_t QueuePort::rx_dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

void QueuePort::deliver(std::span<const uint8_t> frame) {
  {
    std::lock_guard lock(mutex_);
    if (frames_.size() >= kMaxQueuedFrames) {
      ++dropped_;
      return;
    }
    frames_.emplace_back(frame.begin(), frame.end());
  }
  cv_.notify_one();
}

}  // namespace tandem::hostnet
