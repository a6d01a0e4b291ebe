#include "netsim/policy.h"

#include <algorithm>

namespace netsim {
namespace {

void apply_to_direction(DirectionPolicy& d, const FaultSpec& fault) {
  const FaultParams& p = fault.params;
  switch (fault.kind) {
    case FaultKind::Delay:
      d.delay = p.delay;
      d.jitter = p.jitter;
      d.distribution = p.distribution;
      break;
    case FaultKind::Bandwidth:
      d.rate = p.rate;
      // Default depth: 50 ms worth of data, at least one full-size packet. Tokens beyond the
      // depth are lost, so it must cover the proxy's wake-up latency on a busy machine, or
      // the link runs below its rate; 50 ms keeps the cap honest there and still smooth.
      d.burst = p.burst ? p.burst : std::max<uint64_t>(p.rate / 20, 1500);
      break;
    case FaultKind::Loss: d.loss = p.probability; break;
    case FaultKind::BurstLoss: d.burst_loss = p.gilbert_elliott; break;
    case FaultKind::Stall: d.stall = true; break;
    case FaultKind::Duplicate: d.duplicate = p.probability; break;
    case FaultKind::Reorder:
      d.reorder = p.probability;
      d.reorder_gap = p.gap;
      break;
    case FaultKind::Corrupt: d.corrupt = p.probability; break;
    case FaultKind::Blackhole: d.blackhole = true; break;
    case FaultKind::Partition:
    case FaultKind::Flap: d.partition = true; break;
    case FaultKind::Slice:
      d.slice_size = p.size;
      d.slice_gap = p.gap;
      break;
    case FaultKind::Reset:
    case FaultKind::Refuse: break;
  }
}

}  // namespace

void apply_fault(LinkPolicy& policy, const FaultSpec& fault) {
  if (fault.kind == FaultKind::Reset) {
    policy.reset = true;
    return;
  }
  if (fault.kind == FaultKind::Refuse) {
    policy.refuse = true;
    return;
  }
  if (covers(fault.direction, Direction::Up)) apply_to_direction(policy.up, fault);
  if (covers(fault.direction, Direction::Down)) apply_to_direction(policy.down, fault);
}

}  // namespace netsim
