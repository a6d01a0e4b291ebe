#pragma once
// The send side of one link, shared by the threads that send and the link's I/O thread:
// frames waiting for the I/O thread's next gather write, the backlog count for flow control,
// and the direct-write fast path.
//
// The output rule makes the primary's console wait for the secondary's ack of each log batch,
// so every hand-off on that path is latency a client sees: waking the I/O thread to write a
// small frame costs tens of µs (much more on a busy host). So when nothing is queued or being
// written, push() writes the frame itself, from the calling thread, with one non-blocking
// sendmsg (net::DirectWriter) under the queue mutex; whatever the socket does not take, or
// all of it on any error, is queued for the I/O thread, which also reports the error. The
// descriptor cannot be closed meanwhile: detach_direct() withdraws it under the same mutex
// before the I/O thread closes the socket.
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "net/direct_write.h"
#include "replicator/transport/frame.h"

namespace tandem::replicator {

class SendQueue {
 public:
  explicit SendQueue(uint64_t max_queued_bytes) : max_queued_bytes_(max_queued_bytes) {}

  enum class Pushed {
    kOnTheWire,        // written whole by the calling thread
    kQueued,           // queued; the I/O thread already has writing to do
    kQueuedWakeWriter, // queued; the caller must schedule the I/O thread's write_queued
    kOverBacklog,      // refused: the backlog would pass max_queued_bytes (the caller closes)
  };

  // Any thread. Without `check_backlog` (handshake messages) the limit does not apply.
  Pushed push(OutgoingFrame frame, bool check_backlog);

  // I/O thread: moves every queued frame to the end of `out`. False when nothing was queued;
  // the I/O thread then has no writing to do until push() says kQueuedWakeWriter again.
  bool take(std::vector<OutgoingFrame>& out);
  // I/O thread: `bytes` taken by take() left the queue, sent (`ok`) or given up.
  void completed(uint64_t bytes, bool ok);
  bool empty() const;
  // Drops what is queued (not what take() handed out).
  void drop();

  // Direct writes go to `fd` from now on / stop (closing: then only the I/O thread writes).
  void attach_direct(int fd);
  void detach_direct();

  uint64_t queued_bytes() const { return queued_bytes_.load(); }
  uint64_t bytes_sent() const { return bytes_sent_.load(); }
  uint64_t max_queued_bytes() const { return max_queued_bytes_; }

 private:
  // Under mutex_: writes as much of `frame` as the socket takes now. True when all of it went.
  bool try_direct_write_locked(OutgoingFrame& frame);

  const uint64_t max_queued_bytes_;
  mutable std::mutex mutex_;
  std::deque<OutgoingFrame> queue_;  // guarded by mutex_
  bool write_scheduled_ = false;     // guarded by mutex_: the I/O thread has writing to do
  net::DirectWriter direct_;         // guarded by mutex_: attached while direct writes may use the socket
  std::atomic<uint64_t> queued_bytes_{0};
  std::atomic<uint64_t> bytes_sent_{0};
};

}  // namespace tandem::replicator
