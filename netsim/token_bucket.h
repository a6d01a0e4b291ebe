// Token bucket for bandwidth caps: `rate` bytes per second, at most `burst` bytes at once.
// A request larger than the burst is granted once the bucket is full and leaves it in debt,
// so big datagrams still average out to the configured rate.
#pragma once

#include <algorithm>
#include <cstdint>

#include "netsim/units.h"

namespace netsim {

class TokenBucket {
 public:
  void configure(uint64_t rate, uint64_t burst, Clock::time_point now) {
    if (rate == rate_ && burst == burst_) return;
    refill(now);
    rate_ = rate;
    burst_ = burst;
    if (tokens_ > static_cast<double>(burst_) || rate_ == 0) tokens_ = static_cast<double>(burst_);
    last_ = now;
  }

  // Takes n tokens and returns zero if they are available, else returns how long to wait
  // before asking again (nothing is taken).
  Duration try_take(uint64_t n, Clock::time_point now) {
    if (rate_ == 0) return Duration(0);
    refill(now);
    const double need = static_cast<double>(std::min<uint64_t>(n, burst_));
    if (tokens_ >= need) {
      tokens_ -= static_cast<double>(n);
      return Duration(0);
    }
    const double seconds = (need - tokens_) / static_cast<double>(rate_);
    return std::max(Duration(1000), Duration(static_cast<int64_t>(seconds * 1e9) + 1));
  }

  uint64_t burst() const { return burst_; }

 private:
  void refill(Clock::time_point now) {
    if (now > last_) {
      const double seconds = std::chrono::duration<double>(now - last_).count();
      tokens_ = std::min(static_cast<double>(burst_), tokens_ + seconds * static_cast<double>(rate_));
    }
    last_ = now;
  }

  uint64_t rate_ = 0;
  uint64_t burst_ = 0;
  double tokens_ = 0;
  Clock::time_point last_{};
};

}  // namespace netsim
