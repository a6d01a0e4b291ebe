#include "hostnet/tap_backend.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <vector>


namespace tandem::hostnet {

TapBackend::TapBackend(const NetSpec& spec) : ifname_(spec.ifname), max_frame_(spec.mtu + 18u) {
  fd_ = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd_ < 0) {
    const int err = errno;
    std::string msg = "net tap: cannot open /dev/net/tun: " + std::string(std::strerror(err));
    if (err == EPERM || err == EACCES) {
      msg += " (TAP devices need access to /dev/net/tun and CAP_NET_ADMIN, or a device created for this user beforehand)";
    }
    throw std::runtime_error(msg);
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::strncpy(ifr.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
  if (::ioctl(fd_, TUNSETIFF, &ifr) < 0) {
    const int err = errno;
    ::close(fd_);
    std::string msg = "net tap: cannot open TAP device '" + ifname_ + "': " + std::strerror(err);
    if (err == EPERM || err == EACCES) {
      msg += " (creating a TAP device, or using one owned by another user, needs CAP_NET_ADMIN; "
             "as root: ip tuntap add dev " + ifname_ + " mode tap user $(id -un))";
    } else if (err == EBUSY) {
      msg += " (another process has it open)";
    }
    throw std::runtime_error(msg);
  }
  // Bring the link up if we may (the operator may also have done it, or bridge it later).
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock >= 0) {
    ifreq up{};
    std::strncpy(up.ifr_name, ifname_.c_str(), IFNAMSIZ - 1);
    if (::ioctl(sock, SIOCGIFFLAGS, &up) == 0 && !(up.ifr_flags & IFF_UP)) {
      up.ifr_flags |= IFF_UP;
      if (::ioctl(sock, SIOCSIFFLAGS, &up) < 0) {
        spdlog::warn("net tap: {} is down and cannot be brought up here ({}); run: ip link set {} up", ifname_,
                     std::strerror(errno), ifname_);
      }
    }
    ::close(sock);
  }
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    ::close(fd_);
    throw std::runtime_error("net tap: eventfd failed");
  }
  thread_ = std::thread([this] { run(); });
}

TapBackend::~TapBackend() {
  stop_ = true;
  const uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
  thread_.join();
  ::close(wake_fd_);
  ::close(fd_);
}

void TapBackend::send(std::span<const uint8_t> frame) {
  // One write is one frame; EAGAIN (the device's queue is full) drops it.
  [[maybe_unused]] const ssize_t n = ::write(fd_, frame.data(), frame.size());
}

void TapBackend::run() {
  std::vector<uint8_t> buf(65536);
  while (!stop_) {
    pollfd fds[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(fds, 2, 1000) < 0) continue;
    if (fds[1].revents & POLLIN) {
      uint64_t count;
      [[maybe_unused]] const ssize_t n = ::read(wake_fd_, &count, sizeof count);
    }
    if (!(fds[0].revents & POLLIN)) continue;
    for (;;) {
      const ssize_t n = ::read(fd_, buf.data(), buf.size());
      if (n <= 0) break;
      // Frames the NIC could not carry are left out here (it would drop them anyway).
      if (static_cast<size_t>(n) <= max_frame_) deliver({buf.data(), static_cast<size_t>(n)});
    }
  }
}

}  // namespace tandem::hostnet
