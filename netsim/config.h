// The links file of `tandem-netsim serve --config links.toml`:
//
//   seed = 42                     # optional simulator seed
//   [[link]]
//   name = "repl"
//   protocol = "tcp"              # tcp | udp
//   listen = "127.0.0.1:7100"
//   target = "127.0.0.1:7000"
//   from = "primary"              # optional node names, for partitions over node sets
//   to = "secondary"
//   seed = 5                      # optional: this link's own seed
//   max_queue = "8MB"             # optional (TCP back-pressure threshold per direction)
//   connect_timeout = "5s"        # optional (TCP)
//   session_idle = "60s"          # optional (UDP session lifetime without traffic)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "netsim/link.h"

namespace netsim {

struct LinksFile {
  std::optional<uint64_t> seed;
  std::vector<LinkConfig> links;
};

// Throw std::invalid_argument("<source>:<line>: key '<key>': <problem>").
LinksFile parse_links(std::string_view toml_text, const std::string& source = "links");
LinksFile load_links(const std::string& path);

}  // namespace netsim
