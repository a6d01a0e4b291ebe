#include "hostnet/backend.h"

#include "hostnet/slirp_backend.h"
#include "hostnet/tap_backend.h"

namespace tandem::hostnet {

std::unique_ptr<hooks::NetPort> open_backend(const NetSpec& spec) {
  if (spec.kind == NetSpec::Kind::Tap) return std::make_unique<TapBackend>(spec);
  return std::make_unique<SlirpBackend>(spec);
}

}  // namespace tandem::hostnet
