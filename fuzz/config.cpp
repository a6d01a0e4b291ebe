// The node's TOML configuration (replicator/config.cpp): tandemd --config FILE. Relative
// paths resolve against a scratch directory that holds a valid PSK file named pair.psk (the
// name the examples in deploy/examples use), so the checks past the PSK are reached.
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "fuzz/fuzz_support.h"
#include "replicator/config.h"

namespace {

// Removed at exit (fuzz_support.h).
const std::string& scratch_dir() {
  static const tandem::fuzz::ScratchDir dir("tandem-fuzz-config");
  static const bool psk_written = [] {
    const std::string psk = dir.path() + "/pair.psk";
    std::ofstream(psk) << "0123456789abcdef0123456789abcdef\n";
    ::chmod(psk.c_str(), 0600);
    return true;
  }();
  (void)psk_written;
  return dir.path();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& dir = scratch_dir();
  std::vector<std::string> warnings;
  try {
    (void)tandem::replicator::parse_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.toml",
                                           dir, {}, &warnings);
  } catch (const tandem::replicator::ConfigError&) {  // the documented refusal
  }
  return 0;
}
