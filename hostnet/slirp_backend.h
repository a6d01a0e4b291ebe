#pragma once
// `user` networking: libslirp, a user-mode TCP/IP stack doing NAT for the guest (no root).
// The guest's network is 10.0.2.0/24 as on QEMU: the guest gets 10.0.2.15 by DHCP, the host
// is 10.0.2.2, DNS 10.0.2.3. hostfwd= listens on the host and forwards to the guest.
//
// libslirp is single-threaded: every call into it happens on this backend's I/O thread, which
// polls slirp's sockets and an eventfd, runs slirp's timers on the host's monotonic clock,
// feeds it the guest's transmitted frames and queues the frames slirp sends to the guest.
// Standalone runs are not replayed, so host timing here is fine; a recorded run logs the
// frames as they enter the guest.
#include <atomic>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "hostnet/queue_port.h"
#include "hostnet/spec.h"

struct Slirp;
struct pollfd;

namespace tandem::hostnet {

class SlirpBackend final : public QueuePort {
 public:
  // Throws std::runtime_error when slirp cannot start or a forward cannot listen.
  explicit SlirpBackend(const NetSpec& spec);
  ~SlirpBackend() override;
  SlirpBackend(const SlirpBackend&) = delete;
  SlirpBackend& operator=(const SlirpBackend&) = delete;

  void send(std::span<const uint8_t> frame) override;

  // Slirp callbacks (public for the C trampolines; I/O thread only).
  struct Timer {
    int id = 0;
    void* cb_opaque = nullptr;
    void (*cb)(void*) = nullptr;  // the old-style timer_new callback, if that was used
    int64_t expire_ms = -1;       // -1: not armed
  };
  Timer* new_timer(int id, void* cb_opaque, void (*cb)(void*));
  void free_timer(void* timer);
  int add_poll(int fd, int events);
  int revents(int index) const;
  void to_guest(const void* frame, size_t len) { deliver({static_cast<const uint8_t*>(frame), len}); }
  void wake();

 private:
  void run();
  void fire_timers();

  Slirp* slirp_ = nullptr;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::mutex tx_mutex_;
  std::deque<std::vector<uint8_t>> tx_;
  std::list<std::unique_ptr<Timer>> timers_;
  std::vector<::pollfd> pollfds_;
  std::thread thread_;
};

}  // namespace tandem::hostnet
