// tandem-netsim's TOML files: the links file (netsim::parse_links, --links FILE) and the
// scenario file (netsim::parse_scenario, --scenario FILE). Each input goes through both parsers
// (a file is one or the other, and either parser must refuse the other's kind cleanly), so the
// repository's examples (netsim/examples) are seeds as they are.
#include <stdexcept>
#include <string_view>

#include "netsim/config.h"
#include "netsim/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    (void)netsim::parse_links(text, "fuzz-links.toml");
  } catch (const std::invalid_argument&) {  // the documented refusal
  }
  try {
    (void)netsim::parse_scenario(text, "fuzz-scenario.toml");
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
