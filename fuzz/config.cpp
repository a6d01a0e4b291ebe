// The node's TOML configuration (replicator/config.cpp): tandemd --config FILE. Relative
// paths resolve against a scratch directory that holds a valid PSK file named pair.psk (the
// name the examples in deploy/examples use), so the checks past the PSK are reached.
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "replicator/config.h"

namespace {

std::string scratch_dir() {
  char dir[] = "/tmp/tandem-fuzz-config-XXXXXX";
  if (!mkdtemp(dir)) std::abort();
  const std::string psk = std::string(dir) + "/pair.psk";
  std::ofstream(psk) << "0123456789abcdef0123456789abcdef\n";
  ::chmod(psk.c_str(), 0600);
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = scratch_dir();
  std::vector<std::string> warnings;
  try {
    (void)tandem::replicator::parse_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml",
                                           dir, {}, &warnings);
  } catch (const tandem::replicator::ConfigError&) {  // the documented refusal
  }
  return 0;
}
