// tandemd's configuration: a TOML file (see deploy/examples/*.toml) plus command-line
// overrides, validated into a NodeConfig. Every bad value is refused with one line naming
// the file, the line and the key, e.g.
//   host.toml:7: [pair] heartbeat_ms: expected a positive integer, got "fast"
// Unknown sections and keys are errors too, so a typo is never silently ignored.
//
// [net] (optional) gives the guest a NIC: backend = "user" | "tap", mac, mtu, link, ifname
// (tap), hostfwd = ["tcp:127.0.0.1:8080-:5555"] (user); docs/networking.md.
//
// Paths in the file (guest, bios, kernel, initrd, disk, psk_file, state_dir, socket) are relative to the file's
// directory; paths given as flags are relative to the working directory.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "net/endpoint.h"
#include "replicator/node.h"
#include "vmm/boot_spec.h"
#include "replicator/transport/link.h"  // kMinPskBytes: one minimum for config and handshake

namespace tandem::replicator {

// Thrown for every configuration problem; what() is the complete one-line message.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Command-line values that replace the file's (tandemd --role, --listen, ...). Each is
// validated like the file value it replaces; errors name the flag.
struct ConfigOverrides {
  std::optional<std::string> node_name;       // --name
  std::optional<std::string> role;            // --role primary|secondary
  std::optional<std::string> listen;          // --listen HOST:PORT
  std::optional<std::string> peer;            // --peer HOST:PORT
  std::optional<std::string> console_listen;  // --console HOST:PORT
  std::optional<std::string> control_socket;  // --control PATH
  std::optional<std::string> guest;           // --guest FILE
  std::optional<std::string> bios;            // --bios FILE
  std::optional<std::string> kernel;          // --kernel FILE
  std::optional<std::string> initrd;          // --initrd FILE
  std::optional<std::string> append;          // --append TEXT
  std::optional<std::string> disk;            // --disk FILE
  std::optional<uint64_t> mem_mib;            // --mem MiB
  std::optional<std::string> state_dir;       // --state-dir DIR
  std::optional<std::string> log_level;       // --log-level LEVEL
  std::optional<std::string> net;             // --net SPEC (as tandem run's): replaces [net]
};

// What a primary boots, as the one BootSpec every front end shares: Machine loading
// (`boot_spec(cfg).load_into(machine)`) and naming (`identity_image()`, `log_image()`).
inline vmm::BootSpec boot_spec(const NodeConfig& c) {
  return vmm::BootSpec{c.guest, c.bios, c.kernel, c.initrd, c.bootargs};
}

// Reads, validates and returns the configuration. The PSK file is read into `psk` by
// net::load_psk: a regular file its group and others cannot read, holding at least
// kMinPskBytes after trailing line breaks are dropped. Non-fatal findings are appended to
// `warnings` when given, else logged with spdlog::warn. Throws ConfigError.
NodeConfig load_config(const std::string& path, const ConfigOverrides& overrides = {},
                       std::vector<std::string>* warnings = nullptr);

// The same from text already in memory; `source` names it in messages and `base_dir`
// anchors its relative paths.
NodeConfig parse_config(std::string_view text, const std::string& source, const std::string& base_dir,
                        const ConfigOverrides& overrides = {}, std::vector<std::string>* warnings = nullptr);

using net::Endpoint;

// Parses "HOST:PORT" with a numeric host ("127.0.0.1:7100", "[::1]:7100"). Port 0 is allowed
// only when `allow_any_port` (listening on a port the system picks). Throws
// std::invalid_argument with the reason (net::parse_endpoint).
inline Endpoint parse_endpoint(std::string_view text, bool allow_any_port = false) {
  return net::parse_endpoint(text, {.allow_any_port = allow_any_port});
}

// "primary" / "secondary" ↔ Role; nullopt for anything else.
std::optional<Role> parse_role(std::string_view text);

}  // namespace tandem::replicator
