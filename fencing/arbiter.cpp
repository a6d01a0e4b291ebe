// make_arbiter and the `none` arbiter. Each real arbiter lives in its own file and adds
// one case to make_arbiter.
#include "fencing/arbiter.h"

#include <stdexcept>

#include "fencing/arbiters/command_arbiter.h"
#include "fencing/arbiters/disk_arbiter.h"
#include "fencing/arbiters/etcd_arbiter.h"
#include "fencing/arbiters/witness_arbiter.h"

namespace tandem::fencing {

const char* to_string(Grant::Outcome outcome) {
  switch (outcome) {
    case Grant::Outcome::Granted: return "granted";
    case Grant::Outcome::Held: return "held";
    case Grant::Outcome::Refused: return "refused";
    case Grant::Outcome::Unreachable: return "unreachable";
  }
  return "?";
}

namespace {

// No arbiter at all: every request is granted, so promotion rests on heartbeats alone. It
// keeps only this node's view, which is exactly why it cannot prevent split brain.
class NoArbiter final : public Arbiter {
 public:
  std::string describe() const override { return "none (heartbeat-only: no split-brain protection)"; }

  Grant acquire(const std::string& node, uint64_t known_epoch) override {
    if (node != holder_ || epoch_ < known_epoch) {
      epoch_ = std::max(epoch_, known_epoch) + 1;
      holder_ = node;
    }
    return {Grant::Outcome::Granted, epoch_, std::chrono::milliseconds{0}, holder_, "no arbiter configured"};
  }

  // Heartbeat-only: there is no one to refuse a stale replica; the new epoch is local.
  Grant advance(const std::string& node, uint64_t epoch) override {
    holder_ = node;
    epoch_ = std::max(epoch_, epoch) + 1;
    return {Grant::Outcome::Granted, epoch_, std::chrono::milliseconds{0}, holder_, "no arbiter configured"};
  }

  Grant renew(const std::string& node, uint64_t epoch) override {
    holder_ = node;
    epoch_ = std::max(epoch_, epoch);
    return {Grant::Outcome::Granted, epoch_, std::chrono::milliseconds{0}, holder_, "no arbiter configured"};
  }

  void release(const std::string&, uint64_t) override { holder_.clear(); }

 private:
  std::string holder_;
  uint64_t epoch_ = 0;
};

}  // namespace

std::unique_ptr<Arbiter> make_arbiter(const ArbiterConfig& config) {
  if (config.kind == "none") return std::make_unique<NoArbiter>();
  if (config.kind == "witness") return std::make_unique<WitnessArbiter>(config);
  if (config.kind == "disk") return std::make_unique<DiskArbiter>(config);
  if (config.kind == "command") return std::make_unique<CommandArbiter>(config);
  if (config.kind == "etcd") return std::make_unique<EtcdArbiter>(config);
  throw std::invalid_argument("unknown arbiter \"" + config.kind +
                              "\" (expected none, witness, disk, command or etcd)");
}

}  // namespace tandem::fencing
