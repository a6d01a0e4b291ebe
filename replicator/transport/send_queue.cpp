#include "replicator/transport/send_queue.h"

#include <span>

namespace tandem::replicator {

SendQueue::Pushed SendQueue::push(OutgoingFrame frame, bool check_backlog) {
  const size_t size = frame.size();
  std::lock_guard lock(mutex_);
  if (check_backlog && queued_bytes_.load() + size > max_queued_bytes_) return Pushed::kOverBacklog;
  if (!write_scheduled_ && try_direct_write_locked(frame)) return Pushed::kOnTheWire;
  queued_bytes_ += size - frame.written;
  queue_.push_back(std::move(frame));
  if (write_scheduled_) return Pushed::kQueued;
  write_scheduled_ = true;
  return Pushed::kQueuedWakeWriter;
}

bool SendQueue::try_direct_write_locked(OutgoingFrame& frame) {
  if (!direct_.attached()) return false;
  const size_t n = direct_.try_write({std::span<const uint8_t>(frame.header),
                                      std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(frame.payload.data()),
                                                               frame.payload.size())});
  if (n == 0) return false;
  bytes_sent_ += n;
  frame.written = n;
  return frame.written == frame.size();
}

bool SendQueue::take(std::vector<OutgoingFrame>& out) {
  std::lock_guard lock(mutex_);
  if (queue_.empty()) {
    write_scheduled_ = false;
    return false;
  }
  out.insert(out.end(), std::make_move_iterator(queue_.begin()), std::make_move_iterator(queue_.end()));
  queue_.clear();
  return true;
}

void SendQueue::completed(uint64_t bytes, bool ok) {
  queued_bytes_ -= bytes;
  if (ok) bytes_sent_ += bytes;
}

bool SendQueue::empty() const {
  std::lock_guard lock(mutex_);
  return queue_.empty();
}

void SendQueue::drop() {
  std::lock_guard lock(mutex_);
  uint64_t dropped = 0;
  for (const auto& frame : queue_) dropped += frame.size() - frame.written;
  queue_.clear();
  queued_bytes_ -= dropped;
  write_scheduled_ = false;
}

void SendQueue::attach_direct(int fd) {
  std::lock_guard lock(mutex_);
  direct_.attach(fd);
}

void SendQueue::detach_direct() {
  std::lock_guard lock(mutex_);
  direct_.detach();
}

}  // namespace tandem::replicator
