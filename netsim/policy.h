// The effective behaviour of one direction of a link: the sum of the faults that are acting
// on it right now. Recomputed (on the io thread) whenever a fault starts, stops or changes;
// the data path only ever reads it.
#pragma once

#include <cstdint>
#include <optional>

#include "netsim/fault.h"

namespace netsim {

struct DirectionPolicy {
  Duration delay{0};
  Duration jitter{0};
  JitterDistribution distribution = JitterDistribution::Uniform;
  uint64_t rate = 0;  // bytes/s, 0 = unlimited
  uint64_t burst = 0;
  double loss = 0;
  std::optional<GilbertElliott> burst_loss;
  double duplicate = 0;
  double reorder = 0;
  Duration reorder_gap{0};
  double corrupt = 0;
  bool stall = false;
  bool blackhole = false;
  bool partition = false;
  uint64_t slice_size = 0;
  Duration slice_gap{0};

  // TCP: bytes neither move nor get read (stall, partition).
  bool holds() const { return stall || partition; }
  // Nothing touches the bytes or their timing: the zero-copy fast path may be used.
  bool clean() const {
    return delay.count() == 0 && jitter.count() == 0 && rate == 0 && corrupt == 0 && !blackhole && !holds() &&
           slice_size == 0;
  }
};

struct LinkPolicy {
  DirectionPolicy up;
  DirectionPolicy down;
  bool reset = false;
  bool refuse = false;

  DirectionPolicy& of(Direction d) { return d == Direction::Down ? down : up; }
  const DirectionPolicy& of(Direction d) const { return d == Direction::Down ? down : up; }
};

// Folds one acting fault into the policy of the direction(s) it covers. Later faults of the
// same kind override earlier ones.
void apply_fault(LinkPolicy& policy, const FaultSpec& fault);

}  // namespace netsim
