#include "hostnet/slirp_backend.h"

#include <arpa/inet.h>
#include <poll.h>
#include <slirp/libslirp.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <stdexcept>

namespace tandem::hostnet {

namespace {

constexpr size_t kMaxQueuedTx = 512;
constexpr uint32_t kMaxPollMs = 1000;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

SlirpBackend& self(void* opaque) { return *static_cast<SlirpBackend*>(opaque); }

ssize_t cb_send_packet(const void* buf, size_t len, void* opaque) {
  self(opaque).to_guest(buf, len);
  return static_cast<ssize_t>(len);
}
void cb_guest_error(const char* msg, void*) { spdlog::warn("net user: guest error: {}", msg); }
int64_t cb_clock_get_ns(void*) { return now_ns(); }
void* cb_timer_new(SlirpTimerCb cb, void* cb_opaque, void* opaque) {
  return self(opaque).new_timer(0, cb_opaque, cb);
}
void* cb_timer_new_opaque(SlirpTimerId id, void* cb_opaque, void* opaque) {
  return self(opaque).new_timer(static_cast<int>(id), cb_opaque, nullptr);
}
void cb_timer_free(void* timer, void* opaque) { self(opaque).free_timer(timer); }
void cb_timer_mod(void* timer, int64_t expire_ms, void*) {
  static_cast<SlirpBackend::Timer*>(timer)->expire_ms = expire_ms;
}
void cb_register_poll_fd(int, void*) {}
void cb_unregister_poll_fd(int, void*) {}
void cb_notify(void* opaque) { self(opaque).wake(); }

int cb_add_poll(int fd, int events, void* opaque) { return self(opaque).add_poll(fd, events); }
int cb_get_revents(int idx, void* opaque) { return self(opaque).revents(idx); }

const SlirpCb kCallbacks = {
    .send_packet = cb_send_packet,
    .guest_error = cb_guest_error,
    .clock_get_ns = cb_clock_get_ns,
    .timer_new = cb_timer_new,
    .timer_free = cb_timer_free,
    .timer_mod = cb_timer_mod,
    .register_poll_fd = cb_register_poll_fd,
    .unregister_poll_fd = cb_unregister_poll_fd,
    .notify = cb_notify,
    .init_completed = nullptr,
    .timer_new_opaque = cb_timer_new_opaque,
};

in_addr addr(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a;
}

}  // namespace

SlirpBackend::SlirpBackend(const NetSpec& spec) {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::runtime_error("net user: eventfd failed");
  SlirpConfig cfg{};
  cfg.version = 4;
  cfg.restricted = 0;
  cfg.in_enabled = true;
  cfg.vnetwork = addr("10.0.2.0");
  cfg.vnetmask = addr("255.255.255.0");
  cfg.vhost = addr("10.0.2.2");
  cfg.vdhcp_start = addr("10.0.2.15");
  cfg.vnameserver = addr("10.0.2.3");
  cfg.in6_enabled = false;
  cfg.if_mtu = spec.mtu;
  cfg.if_mru = spec.mtu;
  cfg.disable_host_loopback = false;
  cfg.enable_emu = false;
  slirp_ = slirp_new(&cfg, &kCallbacks, this);
  if (!slirp_) {
    ::close(wake_fd_);
    throw std::runtime_error("net user: libslirp failed to start");
  }
  for (const HostForward& f : spec.forwards) {
    const in_addr host = addr(f.host_addr.empty() ? "127.0.0.1" : f.host_addr.c_str());
    const in_addr guest = addr(f.guest_addr.empty() ? "10.0.2.15" : f.guest_addr.c_str());
    if (slirp_add_hostfwd(slirp_, f.udp, host, f.host_port, guest, f.guest_port) < 0) {
      slirp_cleanup(slirp_);
      ::close(wake_fd_);
      throw std::runtime_error("net user: cannot forward " + std::string(f.udp ? "udp " : "tcp ") +
                               (f.host_addr.empty() ? "127.0.0.1" : f.host_addr) + ":" +
                               std::to_string(f.host_port) + " (port in use or not permitted)");
    }
  }
  thread_ = std::thread([this] { run(); });
}

SlirpBackend::~SlirpBackend() {
  stop_ = true;
  wake();
  thread_.join();
  slirp_cleanup(slirp_);
  ::close(wake_fd_);
}

void SlirpBackend::send(std::span<const uint8_t> frame) {
  {
    std::lock_guard lock(tx_mutex_);
    if (tx_.size() >= kMaxQueuedTx) return;  // a congested link drops; TCP recovers
    tx_.emplace_back(frame.begin(), frame.end());
  }
  wake();
}

void SlirpBackend::wake() {
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

SlirpBackend::Timer* SlirpBackend::new_timer(int id, void* cb_opaque, void (*cb)(void*)) {
  auto t = std::make_unique<Timer>();
  t->id = id;
  t->cb_opaque = cb_opaque;
  t->cb = cb;
  timers_.push_back(std::move(t));
  return timers_.back().get();
}

void SlirpBackend::free_timer(void* timer) {
  timers_.remove_if([timer](const std::unique_ptr<Timer>& t) { return t.get() == timer; });
}

int SlirpBackend::add_poll(int fd, int events) {
  short ev = 0;
  if (events & SLIRP_POLL_IN) ev |= POLLIN;
  if (events & SLIRP_POLL_OUT) ev |= POLLOUT;
  if (events & SLIRP_POLL_PRI) ev |= POLLPRI;
  pollfds_.push_back({fd, ev, 0});
  return static_cast<int>(pollfds_.size() - 1);
}

int SlirpBackend::revents(int index) const {
  if (index < 0 || static_cast<size_t>(index) >= pollfds_.size()) return 0;
  const short r = pollfds_[static_cast<size_t>(index)].revents;
  int out = 0;
  if (r & POLLIN) out |= SLIRP_POLL_IN;
  if (r & POLLOUT) out |= SLIRP_POLL_OUT;
  if (r & POLLPRI) out |= SLIRP_POLL_PRI;
  if (r & POLLERR) out |= SLIRP_POLL_ERR;
  if (r & POLLHUP) out |= SLIRP_POLL_HUP;
  return out;
}

void SlirpBackend::fire_timers() {
  const int64_t now_ms = now_ns() / 1'000'000;
  // Collect first: a timer callback may arm, free or create timers.
  std::vector<Timer> due;
  for (auto& t : timers_) {
    if (t->expire_ms >= 0 && t->expire_ms <= now_ms) {
      due.push_back(*t);
      t->expire_ms = -1;
    }
  }
  for (const Timer& t : due) {
    if (t.cb) {
      t.cb(t.cb_opaque);
    } else {
      slirp_handle_timer(slirp_, static_cast<SlirpTimerId>(t.id), t.cb_opaque);
    }
  }
}

void SlirpBackend::run() {
  std::deque<std::vector<uint8_t>> tx;
  for (;;) {
    // Read stop_ before draining: frames the guest sent just before the machine stopped
    // (a last reply, then power-off) still reach slirp, which writes them to their host
    // sockets at once or in the final poll below.
    const bool stopping = stop_;
    {
      std::lock_guard lock(tx_mutex_);
      tx.swap(tx_);
    }
    for (const auto& f : tx) slirp_input(slirp_, f.data(), static_cast<int>(f.size()));
    tx.clear();

    uint32_t timeout_ms = kMaxPollMs;
    const int64_t now_ms = now_ns() / 1'000'000;
    for (const auto& t : timers_) {
      if (t->expire_ms >= 0) {
        timeout_ms = std::min<uint32_t>(timeout_ms, static_cast<uint32_t>(std::max<int64_t>(0, t->expire_ms - now_ms)));
      }
    }
    pollfds_.clear();
    pollfds_.push_back({wake_fd_, POLLIN, 0});
    slirp_pollfds_fill(slirp_, &timeout_ms, cb_add_poll, this);
    const int rc = ::poll(pollfds_.data(), pollfds_.size(),
                          stopping ? 0 : static_cast<int>(std::min(timeout_ms, kMaxPollMs)));
    slirp_pollfds_poll(slirp_, rc < 0, cb_get_revents, this);
    if (pollfds_[0].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
    }
    fire_timers();
    if (stopping) break;
  }
}

}  // namespace tandem::hostnet
