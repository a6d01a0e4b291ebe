// The direct-write fast path: a producer thread writes to a socket itself, without blocking,
// when nothing is queued for the socket's I/O thread, so a small message costs no hand-off
// between threads (tens of µs on a busy host, latency a client sees under the output rule).
// Whatever the socket does not take at once, or all of it on any error, the caller queues
// for its I/O thread as usual (which then reports the error).
//
// Not synchronised itself: the caller guards it with the mutex that guards its send queue,
// and detaches it (under that mutex) before its I/O thread closes the socket, so the
// descriptor can never be closed, or its number reused, under a writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace tandem::net {

class DirectWriter {
 public:
  DirectWriter() = default;
  ~DirectWriter() { detach(); }
  DirectWriter(const DirectWriter&) = delete;
  DirectWriter& operator=(const DirectWriter&) = delete;

  // Writes go to `fd` from now on. With `own_copy` the writer keeps a dup of it (closed by
  // detach()), so the socket's owner may close its own descriptor at any time.
  void attach(int fd, bool own_copy = false);
  // Stops direct writes (and closes the copy, if any). Idempotent.
  void detach();
  bool attached() const { return fd_ >= 0; }

  // Writes as much of `parts` (in order) as the socket takes now, never blocking and never
  // raising SIGPIPE. Returns the bytes written: 0 when detached, on EAGAIN or on an error.
  size_t try_write(std::initializer_list<std::span<const uint8_t>> parts);
  size_t try_write(std::span<const uint8_t> bytes) { return try_write({bytes}); }

 private:
  int fd_ = -1;
  bool owned_ = false;
};

}  // namespace tandem::net
