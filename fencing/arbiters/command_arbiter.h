#pragma once
// CommandArbiter: STONITH ("shoot the other node in the head") by an operator command
// ([fencing] arbiter = "command", fence_command = "ssh root@host-a poweroff").
//
// acquire() runs the command through /bin/sh -c in its own process group, with
// TANDEM_VM_ID, TANDEM_NODE (the caller) and TANDEM_EPOCH (the epoch it will get) in its
// environment. Exit 0 means the peer is powered off: Granted with known_epoch + 1 and ttl 0
// (no lease to renew: a dead peer cannot come back on its own). A non-zero exit or a signal
// is Refused; a command still running after ArbiterConfig.timeout is killed (the whole
// process group) and the answer is Unreachable. Either way `why` ends with the tail of the
// command's stderr. Set arbiter_timeout_ms to what the power-off really takes (seconds):
// with ttl 0 it does not shorten any lease.
//
// advance() (a primary dropping a secondary that went silent on every path) runs the same
// command against the peer, the secondary: Granted with epoch + 1 only once it is off.
// renew() is always granted (the peer stays off); release() does nothing.
#include <string>

#include "fencing/arbiter.h"

namespace tandem::fencing {

class CommandArbiter final : public Arbiter {
 public:
  // Throws std::invalid_argument for an empty fence_command.
  explicit CommandArbiter(const ArbiterConfig& config);

  std::string describe() const override;
  Grant acquire(const std::string& node, uint64_t known_epoch) override;
  Grant renew(const std::string& node, uint64_t epoch) override;
  Grant advance(const std::string& node, uint64_t epoch) override;
  void release(const std::string& node, uint64_t epoch) override;

  static constexpr size_t kStderrTail = 512;  // bytes of stderr kept for `why`

 private:
  ArbiterConfig config_;
};

}  // namespace tandem::fencing
