// Seeded randomness. Every random choice a link makes comes from a generator derived from
// (simulator seed, link name, direction, stream number), so the same seed and the same
// traffic replay the same choices. The distributions are written out here rather than taken
// from <random>, whose algorithms differ between standard libraries.
#pragma once

#include <cmath>
#include <cstdint>
#include <string_view>

namespace netsim {

// SplitMix64: tiny, fast, good enough for fault injection, and trivially seedable.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0) : state_(seed) {}

  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  bool chance(double probability) { return probability > 0 && uniform() < probability; }
  uint64_t below(uint64_t bound) { return bound ? next() % bound : 0; }
  // Standard normal (Box-Muller; one value per call keeps the stream position predictable).
  double normal() {
    double u1 = uniform();
    const double u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
  }
  // Number of trials before the next success for success probability p (geometric, >= 0).
  uint64_t geometric(double p) {
    if (p >= 1) return 0;
    if (p <= 0) return UINT64_MAX;
    double u = uniform();
    if (u < 1e-300) u = 1e-300;
    const double g = std::floor(std::log(u) / std::log1p(-p));
    return g >= 1.8e19 ? UINT64_MAX : static_cast<uint64_t>(g);
  }

 private:
  uint64_t state_;
};

uint64_t derive_seed(uint64_t seed, std::string_view label, uint64_t a = 0, uint64_t b = 0);

}  // namespace netsim
