#pragma once
// `tap` networking: a TAP device (ifname=), opened with TUNSETIFF and created if missing
// (creating one, or opening one not owned by this user, needs CAP_NET_ADMIN). The operator
// bridges it onto a LAN; the guest then has its own address there. An I/O thread reads
// frames from the device; transmitted frames are written directly (non-blocking: a full
// device queue drops the frame, as a congested link would).
#include <atomic>
#include <string>
#include <thread>

#include "hostnet/queue_port.h"
#include "hostnet/spec.h"

namespace tandem::hostnet {

class TapBackend final : public QueuePort {
 public:
  // Throws std::runtime_error with the reason (and, for EPERM, what to do about it).
  explicit TapBackend(const NetSpec& spec);
  ~TapBackend() override;
  TapBackend(const TapBackend&) = delete;
  TapBackend& operator=(const TapBackend&) = delete;

  void send(std::span<const uint8_t> frame) override;
  const std::string& ifname() const { return ifname_; }

 private:
  void run();

  std::string ifname_;
  size_t max_frame_;
  int fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tandem::hostnet
