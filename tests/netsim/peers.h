// Test peers for netsim: plain POSIX sockets on 127.0.0.1, each server on its own thread,
// so the proxy under test talks to peers that share nothing with it.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <dirent.h>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "netsim/link.h"

namespace netsim::test {

inline LinkConfig tcp_link(const std::string& name, uint16_t target_port) {
  LinkConfig c;
  c.name = name;
  c.target_port = target_port;
  return c;
}

inline LinkConfig udp_link(const std::string& name, uint16_t target_port) {
  LinkConfig c = tcp_link(name, target_port);
  c.protocol = Protocol::Udp;
  return c;
}

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

inline sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

inline uint16_t port_of(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// An fd closed on scope exit.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Connects to 127.0.0.1:port. Returns an invalid Fd and sets `error` (errno) on failure.
inline Fd tcp_connect(uint16_t port, int* error = nullptr, bool nodelay = true) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (error) *error = errno;
    return Fd();
  }
  int one = 1;
  if (nodelay) ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

inline bool send_all(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Waits until fd is readable. Returns false on timeout.
inline bool wait_readable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) > 0;
}

// Reads exactly `size` bytes within `timeout`. Returns the count read; sets *error to errno
// (or 0 on EOF/timeout).
inline size_t recv_exact(int fd, void* data, size_t size, std::chrono::milliseconds timeout, int* error = nullptr) {
  char* p = static_cast<char*>(data);
  size_t got = 0;
  const auto deadline = SteadyClock::now() + timeout;
  if (error) *error = 0;
  while (got < size) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0 || !wait_readable(fd, left)) break;
    const ssize_t n = ::recv(fd, p + got, size - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (error) *error = errno;
      break;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

// A TCP server on an ephemeral port; each accepted connection runs `handler(fd)` on its own
// thread. Stops (and joins every thread) in its destructor.
class TcpServer {
 public:
  explicit TcpServer(std::function<void(int)> handler) : handler_(std::move(handler)) {
    listen_ = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(listen_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a = loopback(0);
    if (::bind(listen_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_.get(), 1024) != 0)
      throw std::runtime_error("test server: cannot listen");
    port_ = port_of(listen_.get());
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~TcpServer() {
    stopping_ = true;
    ::shutdown(listen_.get(), SHUT_RDWR);
    acceptor_.join();
    std::unique_lock lock(mutex_);
    for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    idle_.wait(lock, [this] { return open_.empty(); });
  }
  uint16_t port() const { return port_; }
  size_t accepted() const { return accepted_.load(); }

 private:
  void accept_loop() {
    for (;;) {
      const int fd = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) {
        if (stopping_) return;
        if (errno == EINTR || errno == ECONNABORTED) continue;
        return;
      }
      accepted_++;
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::lock_guard lock(mutex_);
      open_.push_back(fd);
      // Detached, so thousands of short connections do not pile up unjoined threads; the
      // destructor waits for `open_` to empty instead.
      std::thread([this, fd] {
        handler_(fd);
        std::lock_guard inner(mutex_);
        std::erase(open_, fd);
        ::close(fd);
        idle_.notify_all();
      }).detach();
    }
  }

  std::function<void(int)> handler_;
  Fd listen_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<size_t> accepted_{0};
  std::thread acceptor_;
  std::mutex mutex_;
  std::condition_variable idle_;
  std::vector<int> open_;
};

inline void echo_handler(int fd) {
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) return;
    if (!send_all(fd, buffer, static_cast<size_t>(n))) return;
  }
}

// A bound UDP socket on an ephemeral port.
inline Fd udp_socket() {
  Fd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a = loopback(0);
  ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);
  int size = 4 << 20;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  return fd;
}

inline void udp_send(int fd, uint16_t port, const void* data, size_t size) {
  sockaddr_in a = loopback(port);
  ::sendto(fd, data, size, 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
}

// Receives one datagram within `timeout`; returns its size or -1.
inline ssize_t udp_recv(int fd, void* data, size_t size, std::chrono::milliseconds timeout,
                        sockaddr_in* from = nullptr) {
  if (!wait_readable(fd, timeout)) return -1;
  socklen_t len = sizeof(sockaddr_in);
  return ::recvfrom(fd, data, size, 0, reinterpret_cast<sockaddr*>(from), from ? &len : nullptr);
}

// UDP server that records every datagram (and echoes it back if asked), on its own thread.
class UdpServer {
 public:
  explicit UdpServer(bool echo) : echo_(echo), fd_(udp_socket()) {
    port_ = port_of(fd_.get());
    thread_ = std::thread([this] { loop(); });
  }
  ~UdpServer() {
    stopping_ = true;
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::vector<std::vector<uint8_t>> received() const {
    std::lock_guard lock(mutex_);
    return received_;
  }
  size_t count() const {
    std::lock_guard lock(mutex_);
    return received_.size();
  }
  // Waits until the count stops changing for `quiet` (or `limit` passes).
  size_t settle(std::chrono::milliseconds quiet = 200ms, std::chrono::milliseconds limit = 10s) const {
    const auto end = SteadyClock::now() + limit;
    size_t last = count();
    auto stable_since = SteadyClock::now();
    while (SteadyClock::now() < end) {
      std::this_thread::sleep_for(20ms);
      const size_t now = count();
      if (now != last) {
        last = now;
        stable_since = SteadyClock::now();
      } else if (SteadyClock::now() - stable_since >= quiet) {
        break;
      }
    }
    return last;
  }

 private:
  void loop() {
    std::vector<uint8_t> buffer(65536);
    while (!stopping_) {
      sockaddr_in from{};
      const ssize_t n = udp_recv(fd_.get(), buffer.data(), buffer.size(), 50ms, &from);
      if (n < 0) continue;
      {
        std::lock_guard lock(mutex_);
        received_.emplace_back(buffer.begin(), buffer.begin() + n);
      }
      if (echo_) ::sendto(fd_.get(), buffer.data(), static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), sizeof from);
    }
  }

  bool echo_;
  Fd fd_;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<std::vector<uint8_t>> received_;
};

// Open descriptors of this process (for leak checks).
inline size_t open_fd_count() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

// Polls `condition` until true or `limit` passes.
template <typename Fn>
bool eventually(Fn condition, std::chrono::milliseconds limit = 10s) {
  const auto end = SteadyClock::now() + limit;
  while (SteadyClock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return condition();
}

}  // namespace netsim::test
