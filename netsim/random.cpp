#include "netsim/random.h"

#include <xxhash.h>

namespace netsim {

uint64_t derive_seed(uint64_t seed, std::string_view label, uint64_t a, uint64_t b) {
  const uint64_t h = XXH64(label.data(), label.size(), seed);
  Rng mix(h ^ (a * 0x9e3779b97f4a7c15ULL) ^ (b * 0xc2b2ae3d27d4eb4fULL));
  return mix.next();
}

}  // namespace netsim
