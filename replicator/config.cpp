// A little over 600 lines: one reader per TOML table ([node], [vm], [pair], [console],
// [control], [fencing], [net]), each short, with the checks that name the file, line and key.
#include "replicator/config.h"

#include "vmm/boot_spec.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>

#include "net/encoding.h"
#include "net/psk.h"
#include "hostnet/spec.h"

namespace tandem::replicator {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMaxMemMib = 65536;          // same bound as `tandem run --mem`
constexpr uint32_t kMaxIntervalMs = 60'000;     // heartbeat and lag bounds beyond a minute are typos
constexpr uint32_t kMaxHeartbeatMisses = 1000;
constexpr size_t kMaxUnixSocketPath = 107;      // sizeof(sockaddr_un::sun_path) - 1
constexpr std::array kArbiterKinds = {"none", "witness", "disk", "command", "etcd"};
constexpr std::array kLogLevels = {"trace", "debug", "info", "warn", "error", "critical", "off"};

// Where a value came from, as the prefix of its error message: "host.toml:7: [pair] listen"
// for the file, "--listen" for a flag.
struct Origin {
  std::string where;
};

[[noreturn]] void fail(const Origin& origin, std::string_view problem) {
  throw ConfigError(fmt::format("{}: {}", origin.where, problem));
}

// Shows a value the way the user wrote it: strings quoted, numbers bare.
std::string quote(std::string_view text) { return net::quoted(text); }

std::string describe(const toml::node& node) {
  if (auto s = node.as_string()) return quote(s->get());
  if (auto i = node.as_integer()) return std::to_string(i->get());
  if (auto f = node.as_floating_point()) return fmt::format("{}", f->get());
  if (auto b = node.as_boolean()) return b->get() ? "true" : "false";
  if (node.is_table()) return "a table";
  if (node.is_array()) return "an array";
  return "a date/time";
}

template <typename T>
struct Setting {
  T value{};
  Origin origin;
  bool set = false;
};

// Everything the file and the flags said, before defaults and cross-checks.
struct RawConfig {
  Setting<std::string> name, state_dir, log_level;
  Setting<std::string> guest, disk, vm_id;
  Setting<std::string> bios, kernel, initrd, append;
  Setting<uint64_t> mem_mib;
  Setting<Role> role;
  Setting<std::string> listen, peer, psk_file;
  Setting<uint64_t> heartbeat_ms, heartbeat_misses, max_lag_ms;
  Setting<bool> encryption;
  Setting<std::string> console_listen, control_socket;
  // [fencing]
  Setting<std::string> arbiter, witness, disk_path, fence_command, etcd;
  Setting<uint64_t> lease_ms, arbiter_timeout_ms;
  Setting<std::string> heartbeat_listen, heartbeat_peer;
  Setting<uint64_t> path_heartbeat_ms, path_heartbeat_misses;
  // [net]: the backend, then its options as KEY=VALUE text for hostnet::set_net_option
  // (hostfwd once per array element), each with where it was written.
  Setting<std::string> net_backend;
  struct NetOption {
    std::string key, value;
    Origin origin;
  };
  std::vector<NetOption> net_options;
  std::vector<std::string> allow;  // [pair] allow
  Origin net_section;
  bool net_set = false;
  std::optional<hostnet::NetSpec> net_flag;  // --net SPEC, already parsed
};

class FileReader {
 public:
  FileReader(std::string source, std::string base_dir) : source_(std::move(source)), base_dir_(std::move(base_dir)) {}

  void read(const toml::table& root, RawConfig& raw) {
    for (const auto& [key, node] : root) {
      const std::string section(key.str());
      const Origin origin{fmt::format("{}:{}: [{}]", source_, line_of(node), section)};
      const auto* table = node.as_table();
      if (!known_section(section)) {
        fail(origin, "unknown section (known: [node], [vm], [pair], [console], [control], [fencing], [net])");
      }
      if (!table) fail(origin, fmt::format("expected a section (table), got {}", describe(node)));
      section_lines_[section] = line_of(node);
      if (section == "net") {
        raw.net_set = true;
        raw.net_section = {fmt::format("{}:{}: [net]", source_, line_of(node))};
      }
      for (const auto& [item_key, item] : *table) read_item(section, std::string(item_key.str()), item, raw);
    }
  }

  // The origin used when a required key is absent: the section header when there is one.
  Origin missing(const std::string& section, const std::string& key) const {
    auto it = section_lines_.find(section);
    const int line = it == section_lines_.end() ? 1 : it->second;
    return {fmt::format("{}:{}: [{}] {}", source_, line, section, key)};
  }

  const std::string& base_dir() const { return base_dir_; }

 private:
  static int line_of(const toml::node& node) { return static_cast<int>(node.source().begin.line); }

  static bool known_section(const std::string& s) {
    return s == "node" || s == "vm" || s == "pair" || s == "console" || s == "control" || s == "fencing" ||
           s == "net";
  }

  void read_item(const std::string& section, const std::string& key, const toml::node& node, RawConfig& raw) {
    const Origin origin{fmt::format("{}:{}: [{}] {}", source_, line_of(node), section, key)};
    auto text = [&](Setting<std::string>& out) {
      const auto* s = node.as_string();
      if (!s) fail(origin, fmt::format("expected a string, got {}", describe(node)));
      out = {s->get(), origin, true};
    };
    auto path = [&](Setting<std::string>& out) {
      text(out);
      if (out.value.empty()) fail(origin, "expected a path, got an empty string");
      out.value = anchor(out.value);
    };
    auto boolean = [&](Setting<bool>& out) {
      const auto* b = node.as_boolean();
      if (!b) fail(origin, fmt::format("expected true or false, got {}", describe(node)));
      out = {b->get(), origin, true};
    };
    auto positive = [&](Setting<uint64_t>& out, uint64_t max) {
      const auto* i = node.as_integer();
      if (!i || i->get() <= 0) fail(origin, fmt::format("expected a positive integer, got {}", describe(node)));
      if (static_cast<uint64_t>(i->get()) > max)
        fail(origin, fmt::format("expected a positive integer up to {}, got {}", max, i->get()));
      out = {static_cast<uint64_t>(i->get()), origin, true};
    };

    if (section == "node") {
      if (key == "name") return text(raw.name);
      if (key == "state_dir") return path(raw.state_dir);
      if (key == "log_level") return text(raw.log_level);
      fail(origin, "unknown key (known: name, state_dir, log_level)");
    }
    if (section == "vm") {
      if (key == "guest") return path(raw.guest);
      if (key == "bios") return path(raw.bios);
      if (key == "kernel") return path(raw.kernel);
      if (key == "initrd") return path(raw.initrd);
      if (key == "append") return text(raw.append);
      if (key == "disk") return path(raw.disk);
      if (key == "id") return text(raw.vm_id);
      if (key == "mem_mib") return positive(raw.mem_mib, kMaxMemMib);
      fail(origin, "unknown key (known: guest, bios, kernel, initrd, append, mem_mib, disk, id)");
    }
    if (section == "pair") {
      if (key == "role") {
        Setting<std::string> role_text;
        text(role_text);
        auto role = parse_role(role_text.value);
        if (!role) fail(origin, fmt::format("expected \"primary\" or \"secondary\", got {}", quote(role_text.value)));
        raw.role = {*role, origin, true};
        return;
      }
      if (key == "listen") return text(raw.listen);
      if (key == "peer") return text(raw.peer);
      if (key == "psk_file") return path(raw.psk_file);
      if (key == "heartbeat_ms") return positive(raw.heartbeat_ms, kMaxIntervalMs);
      if (key == "heartbeat_misses") return positive(raw.heartbeat_misses, kMaxHeartbeatMisses);
      if (key == "max_lag_ms") return positive(raw.max_lag_ms, kMaxIntervalMs);
      if (key == "allow") {  // numeric peer addresses the replication link and heartbeat listeners admit
        const auto* addresses = node.as_array();
        if (!addresses) fail(origin, fmt::format("expected an array of numeric IP addresses, got {}", describe(node)));
        for (const toml::node& a : *addresses) {
          const auto* text = a.as_string();
          boost::system::error_code ec;
          if (text) (void)boost::asio::ip::make_address(text->get(), ec);
          if (!text || ec) {
            fail(origin, fmt::format("expected an array of numeric IP addresses, found {}",
                                     text ? quote(text->get()) : describe(a)));
          }
          raw.allow.push_back(text->get());
        }
        return;
      }
      if (key == "encryption") return boolean(raw.encryption);
      fail(origin, "unknown key (known: role, listen, peer, psk_file, heartbeat_ms, heartbeat_misses, max_lag_ms, "
                   "allow, encryption)");
    }
    if (section == "console") {
      if (key == "listen") return text(raw.console_listen);
      fail(origin, "unknown key (known: listen)");
    }
    if (section == "fencing") {
      if (key == "arbiter") return text(raw.arbiter);
      if (key == "witness") return text(raw.witness);
      if (key == "disk_path") return path(raw.disk_path);
      if (key == "fence_command") return text(raw.fence_command);
      if (key == "etcd") return text(raw.etcd);
      if (key == "lease_ms") return positive(raw.lease_ms, kMaxIntervalMs);
      if (key == "arbiter_timeout_ms") return positive(raw.arbiter_timeout_ms, kMaxIntervalMs);
      if (key == "heartbeat_listen") return text(raw.heartbeat_listen);
      if (key == "heartbeat_peer") return text(raw.heartbeat_peer);
      if (key == "heartbeat_ms") return positive(raw.path_heartbeat_ms, kMaxIntervalMs);
      if (key == "heartbeat_misses") return positive(raw.path_heartbeat_misses, kMaxHeartbeatMisses);
      fail(origin, "unknown key (known: arbiter, witness, disk_path, fence_command, etcd, lease_ms, "
                   "arbiter_timeout_ms, heartbeat_listen, heartbeat_peer, heartbeat_ms, heartbeat_misses)");
    }
    if (section == "net") {
      if (key == "backend") return text(raw.net_backend);
      if (key == "mac" || key == "ifname" || key == "link") {
        Setting<std::string> value;
        text(value);
        raw.net_options.push_back({key, value.value, origin});
        return;
      }
      if (key == "mtu") {
        const auto* i = node.as_integer();
        if (!i) fail(origin, fmt::format("expected an integer, got {}", describe(node)));
        raw.net_options.push_back({key, std::to_string(i->get()), origin});
        return;
      }
      if (key == "hostfwd") {
        const auto* forwards = node.as_array();
        if (!forwards) fail(origin, fmt::format("expected an array of strings, got {}", describe(node)));
        for (const toml::node& f : *forwards) {
          const auto* s = f.as_string();
          if (!s) fail(origin, fmt::format("expected an array of strings, found {}", describe(f)));
          raw.net_options.push_back({key, s->get(), origin});
        }
        return;
      }
      fail(origin, "unknown key (known: backend, mac, mtu, link, ifname, hostfwd)");
    }
    if (key == "socket") return path(raw.control_socket);  // [control]
    fail(origin, "unknown key (known: socket)");
  }

  std::string anchor(const std::string& path) const {
    const fs::path p(path);
    if (p.is_absolute() || base_dir_.empty()) return p.lexically_normal().string();
    return (fs::path(base_dir_) / p).lexically_normal().string();
  }

  std::string source_;
  std::string base_dir_;
  std::map<std::string, int> section_lines_;
};

void apply_overrides(const ConfigOverrides& o, RawConfig& raw) {
  auto text = [](Setting<std::string>& out, const std::optional<std::string>& value, const char* flag) {
    if (value) out = {*value, Origin{flag}, true};
  };
  auto path = [](Setting<std::string>& out, const std::optional<std::string>& value, const char* flag) {
    if (!value) return;
    if (value->empty()) fail(Origin{flag}, "expected a path, got an empty string");
    out = {fs::path(*value).lexically_normal().string(), Origin{flag}, true};
  };
  text(raw.name, o.node_name, "--name");
  if (o.role) {
    auto role = parse_role(*o.role);
    if (!role) fail(Origin{"--role"}, fmt::format("expected \"primary\" or \"secondary\", got {}", quote(*o.role)));
    raw.role = {*role, Origin{"--role"}, true};
  }
  text(raw.listen, o.listen, "--listen");
  text(raw.peer, o.peer, "--peer");
  text(raw.console_listen, o.console_listen, "--console");
  path(raw.control_socket, o.control_socket, "--control");
  path(raw.guest, o.guest, "--guest");
  path(raw.bios, o.bios, "--bios");
  path(raw.kernel, o.kernel, "--kernel");
  path(raw.initrd, o.initrd, "--initrd");
  text(raw.append, o.append, "--append");
  path(raw.disk, o.disk, "--disk");
  if (o.mem_mib) {
    if (*o.mem_mib == 0 || *o.mem_mib > kMaxMemMib)
      fail(Origin{"--mem"}, fmt::format("expected a positive integer up to {}, got {}", kMaxMemMib, *o.mem_mib));
    raw.mem_mib = {*o.mem_mib, Origin{"--mem"}, true};
  }
  path(raw.state_dir, o.state_dir, "--state-dir");
  if (o.net) {
    try {
      raw.net_flag = hostnet::parse_net_spec(*o.net);
    } catch (const std::invalid_argument& e) {
      fail(Origin{"--net"}, e.what());
    }
  }
  text(raw.log_level, o.log_level, "--log-level");
}

std::string checked_endpoint(const Setting<std::string>& s, bool allow_any_port) {
  try {
    const Endpoint e = parse_endpoint(s.value, allow_any_port);
    (void)e;
    return s.value;
  } catch (const std::invalid_argument& e) {
    fail(s.origin, e.what());
  }
}

bool valid_node_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '_' || c == '.';
    if (!ok) return false;
  }
  return name != "." && name != "..";
}

std::string host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) return "tandem";
  return buffer;
}

// Reads the PSK file (net::load_psk: a private regular file, at least kMinPskBytes after
// trailing line breaks are dropped, so `openssl rand -hex 32 > psk` works on both hosts alike).
std::string load_psk(const Setting<std::string>& s) {
  try {
    return net::load_psk(s.value);
  } catch (const std::invalid_argument& e) {
    fail(s.origin, e.what());
  }
}

// [fencing]: the arbiter with the settings its kind needs (and none it ignores), the lease
// timing, and the second heartbeat path (both addresses or neither).
void finish_fencing(const RawConfig& raw, const FileReader& file, NodeConfig& c) {
  fencing::ArbiterConfig& f = c.fencing;
  f.vm_id = c.vm_id;
  f.psk = c.psk;
  if (raw.arbiter.set) {
    const std::string& kind = raw.arbiter.value;
    if (std::find(kArbiterKinds.begin(), kArbiterKinds.end(), kind) == kArbiterKinds.end())
      fail(raw.arbiter.origin, fmt::format("unknown arbiter {} (expected none, witness, disk, command or etcd)", quote(kind)));
    f.kind = kind;
  }
  // Each kind's own setting: required for that kind, an error for any other (a setting that
  // does nothing is a misunderstanding worth hearing about).
  struct KindSetting {
    const Setting<std::string>* setting;
    const char* key;
    const char* kind;
  };
  const std::array settings = {KindSetting{&raw.witness, "witness", "witness"},
                               KindSetting{&raw.disk_path, "disk_path", "disk"},
                               KindSetting{&raw.fence_command, "fence_command", "command"},
                               KindSetting{&raw.etcd, "etcd", "etcd"}};
  for (const KindSetting& k : settings) {
    if (f.kind == k.kind && !k.setting->set)
      fail(file.missing("fencing", k.key), fmt::format("not set; it is required with arbiter = \"{}\"", k.kind));
    if (f.kind != k.kind && k.setting->set)
      fail(k.setting->origin, fmt::format("only used with arbiter = \"{}\" (arbiter is \"{}\")", k.kind, f.kind));
  }
  if (raw.witness.set) f.witness = checked_endpoint(raw.witness, /*allow_any_port=*/false);
  if (raw.disk_path.set) f.disk_path = raw.disk_path.value;
  if (raw.fence_command.set) {
    if (raw.fence_command.value.find_first_not_of(" \t") == std::string::npos)
      fail(raw.fence_command.origin, "expected a shell command, got an empty string");
    f.fence_command = raw.fence_command.value;
  }
  if (raw.etcd.set) {
    const std::string& url = raw.etcd.value;
    if (url.rfind("http://", 0) != 0 || url.size() <= 7)
      fail(raw.etcd.origin, fmt::format("expected an http:// URL of the etcd gateway, got {}", quote(url)));
    f.etcd = url;
  }
  if (raw.lease_ms.set) f.lease = std::chrono::milliseconds(raw.lease_ms.value);
  if (raw.arbiter_timeout_ms.set) f.timeout = std::chrono::milliseconds(raw.arbiter_timeout_ms.value);
  // The self-fencing window after a granted request is lease * 0.95 - 2 * timeout
  // (docs/fencing.md): it must be positive or a primary could never release output.
  const auto window = f.lease * 95 / 100 - 2 * f.timeout;
  if (f.kind != "none" && f.kind != "command" && window <= std::chrono::milliseconds(0)) {
    const Origin origin = raw.arbiter_timeout_ms.set ? raw.arbiter_timeout_ms.origin
                          : raw.lease_ms.set         ? raw.lease_ms.origin
                                                     : file.missing("fencing", "lease_ms");
    fail(origin, fmt::format("lease_ms {} leaves no time to release output: it must exceed "
                             "2 * arbiter_timeout_ms / 0.95 = {} ms",
                             f.lease.count(), (2 * f.timeout.count() * 100 + 94) / 95));
  }

  fencing::SecondPathConfig& p = c.second_path;
  if (raw.heartbeat_listen.set != raw.heartbeat_peer.set) {
    const Setting<std::string>& given = raw.heartbeat_listen.set ? raw.heartbeat_listen : raw.heartbeat_peer;
    const char* other = raw.heartbeat_listen.set ? "heartbeat_peer" : "heartbeat_listen";
    fail(given.origin, fmt::format("the second heartbeat path needs both heartbeat_listen and heartbeat_peer; {} is not set",
                                   other));
  }
  if (raw.heartbeat_listen.set) {
    p.listen = checked_endpoint(raw.heartbeat_listen, /*allow_any_port=*/true);
    p.peer = checked_endpoint(raw.heartbeat_peer, /*allow_any_port=*/false);
    for (const std::string* other : {&c.listen, &c.console_listen}) {
      if (other->empty()) continue;
      const Endpoint a = parse_endpoint(p.listen, true), b = parse_endpoint(*other, true);
      if (a.port != 0 && a.port == b.port && a.host == b.host)
        fail(raw.heartbeat_listen.origin, fmt::format("{} is already used by [pair] listen or [console] listen", quote(p.listen)));
    }
  } else if (raw.path_heartbeat_ms.set || raw.path_heartbeat_misses.set) {
    const Setting<uint64_t>& given = raw.path_heartbeat_ms.set ? raw.path_heartbeat_ms : raw.path_heartbeat_misses;
    fail(given.origin, "only used with the second heartbeat path (heartbeat_listen and heartbeat_peer)");
  }
  if (raw.path_heartbeat_ms.set) p.timing.interval = std::chrono::milliseconds(raw.path_heartbeat_ms.value);
  if (raw.path_heartbeat_misses.set) p.timing.misses = static_cast<uint32_t>(raw.path_heartbeat_misses.value);
}

// [net]: the guest's NIC and its host backend (hostnet/spec.h's rules, errors at the key).
// --net replaces the whole section.
void finish_net(const RawConfig& raw, const FileReader& file, NodeConfig& c, std::vector<std::string>& warnings) {
  if (raw.net_flag) {
    c.net = raw.net_flag;
  } else if (raw.net_set) {
    if (!raw.net_backend.set) fail(file.missing("net", "backend"), "not set; expected \"user\" or \"tap\"");
    hostnet::NetSpec spec;
    try {
      spec.kind = hostnet::parse_net_backend(raw.net_backend.value);
    } catch (const std::invalid_argument& e) {
      fail(raw.net_backend.origin, e.what());
    }
    const bool tap = spec.kind == hostnet::NetSpec::Kind::Tap;
    for (const RawConfig::NetOption& o : raw.net_options) {
      if (o.key == "hostfwd" && tap)
        fail(o.origin, "only used with backend = \"user\" (a TAP device is bridged, not forwarded)");
      if (o.key == "ifname" && !tap) fail(o.origin, "only used with backend = \"tap\"");
      try {
        hostnet::set_net_option(spec, o.key, o.value);
      } catch (const std::invalid_argument& e) {
        fail(o.origin, e.what());
      }
    }
    if (tap && spec.ifname.empty()) fail(file.missing("net", "ifname"), "not set; it is required with backend = \"tap\"");
    c.net = std::move(spec);
  }
  if (c.net && c.net->kind == hostnet::NetSpec::Kind::User) {
    warnings.push_back(fmt::format(
        "{}: backend \"user\" keeps its NAT state in this process: connections through it do not survive a "
        "failover (use backend = \"tap\" on a bridged LAN for that)",
        raw.net_flag ? std::string("--net") : raw.net_backend.origin.where));
  }
}

// `warnings` collects non-fatal findings (a user-mode NIC in a pair).
NodeConfig finish(RawConfig& raw, const FileReader& file, std::vector<std::string>& warnings) {
  NodeConfig c;
  auto required = [&](const Setting<std::string>& s, const char* section, const char* key, const char* flag,
                      const char* when = nullptr) {
    if (s.set) return;
    const std::string condition = when ? fmt::format(" {}", when) : "";
    const std::string flag_hint = flag ? fmt::format(" (or give {})", flag) : "";
    fail(file.missing(section, key), fmt::format("not set; it is required{}{}", condition, flag_hint));
  };

  // [node]
  if (raw.name.set) {
    if (!valid_node_name(raw.name.value))
      fail(raw.name.origin, fmt::format("expected 1-64 letters, digits, '-', '_' or '.', got {}", quote(raw.name.value)));
    c.node_name = raw.name.value;
  } else {
    c.node_name = host_name();
    if (!valid_node_name(c.node_name))
      fail(file.missing("node", "name"), fmt::format("the host name {} is not a usable node name; set one", quote(c.node_name)));
  }
  if (raw.log_level.set) {
    if (std::find(kLogLevels.begin(), kLogLevels.end(), raw.log_level.value) == kLogLevels.end())
      fail(raw.log_level.origin, fmt::format("expected one of trace, debug, info, warn, error, critical, off, got {}",
                                             quote(raw.log_level.value)));
    c.log_level = raw.log_level.value;
  }
  c.state_dir = raw.state_dir.set ? raw.state_dir.value : "/var/lib/tandem/" + c.node_name;

  // [pair]
  c.role = raw.role.set ? raw.role.value : Role::Primary;
  if (c.role == Role::Secondary) required(raw.listen, "pair", "listen", "--listen", "on a secondary");
  if (raw.listen.set) c.listen = checked_endpoint(raw.listen, /*allow_any_port=*/true);
  if (raw.peer.set) c.peer = checked_endpoint(raw.peer, /*allow_any_port=*/false);
  c.allow = raw.allow;
  c.second_path.admission.allow = raw.allow;
  if (raw.heartbeat_ms.set) c.heartbeat_ms = static_cast<uint32_t>(raw.heartbeat_ms.value);
  if (raw.heartbeat_misses.set) c.heartbeat_misses = static_cast<uint32_t>(raw.heartbeat_misses.value);
  if (raw.max_lag_ms.set) c.max_lag_ms = static_cast<uint32_t>(raw.max_lag_ms.value);
  if (raw.encryption.set) c.link_encryption = raw.encryption.value;

  // [console], [control]
  if (raw.console_listen.set) {
    c.console_listen = checked_endpoint(raw.console_listen, /*allow_any_port=*/true);
    if (raw.listen.set) {
      const Endpoint a = parse_endpoint(c.listen, true), b = parse_endpoint(c.console_listen, true);
      if (a.port != 0 && a.port == b.port && a.host == b.host)
        fail(raw.console_listen.origin, fmt::format("{} is also the replication listen address", quote(c.console_listen)));
    }
  }
  c.control_socket = raw.control_socket.set ? raw.control_socket.value : "/run/tandem/" + c.node_name + ".sock";
  if (c.control_socket.size() > kMaxUnixSocketPath) {
    const Origin origin = raw.control_socket.set ? raw.control_socket.origin : file.missing("control", "socket");
    fail(origin, fmt::format("{} is longer than the {} bytes a Unix socket path may have", quote(c.control_socket),
                             kMaxUnixSocketPath));
  }

  // [vm]: a primary boots the guest; a secondary receives the machine from its primary and
  // only needs to know which VM it protects.
  // The guest is either a bare image (guest) or a firmware boot (bios [+ kernel [+ initrd]]):
  // vmm::BootSpec's rules, the same as `tandem run`'s; here only whether a key is given counts.
  {
    const auto given = [](const Setting<std::string>& s) { return s.set ? std::string("given") : std::string(); };
    const vmm::BootSpec keys{given(raw.guest), given(raw.bios), given(raw.kernel), given(raw.initrd), given(raw.append)};
    if (const auto broken = keys.check()) {
      const auto setting = [&](vmm::BootField f) -> const Setting<std::string>& {
        switch (f) {
          case vmm::BootField::Guest: return raw.guest;
          case vmm::BootField::Bios: return raw.bios;
          case vmm::BootField::Kernel: return raw.kernel;
          case vmm::BootField::Initrd: return raw.initrd;
          case vmm::BootField::Append: return raw.append;
        }
        return raw.guest;
      };
      if (broken->excludes) {
        fail(setting(broken->field).origin,
             fmt::format("exclusive with [vm] guest ({}): a bare image or a firmware boot, not both",
                         setting(broken->other).origin.where));
      }
      if (broken->other == vmm::BootField::Bios)
        fail(setting(broken->field).origin, "needs [vm] bios (or --bios): the kernel is entered through the firmware");
      fail(setting(broken->field).origin, "needs [vm] kernel (or --kernel)");
    }
  }
  if (c.role == Role::Primary && !raw.bios.set)
    required(raw.guest, "vm", "guest", "--guest or --bios", "on a primary (or bios for a firmware boot)");
  auto image = [](const Setting<std::string>& s, std::string& out) {
    if (!s.set) return;
    if (!fs::is_regular_file(s.value)) fail(s.origin, fmt::format("no such file {}", quote(s.value)));
    out = s.value;
  };
  image(raw.guest, c.guest);
  image(raw.bios, c.bios);
  image(raw.kernel, c.kernel);
  image(raw.initrd, c.initrd);
  if (raw.append.set) c.bootargs = raw.append.value;
  if (raw.mem_mib.set) c.mem_mib = raw.mem_mib.value;
  if (raw.disk.set) {
    const fs::path disk(raw.disk.value);
    if (c.role == Role::Primary && !fs::is_regular_file(disk))
      fail(raw.disk.origin, fmt::format("no such file {}", quote(raw.disk.value)));
    // A secondary's disk is written from the primary's; only its directory must exist.
    const fs::path dir = disk.has_parent_path() ? disk.parent_path() : fs::path(".");
    if (!fs::is_directory(dir)) fail(raw.disk.origin, fmt::format("no such directory {}", quote(dir.string())));
    c.disk = raw.disk.value;
  }
  if (raw.vm_id.set) {
    if (raw.vm_id.value.empty() || raw.vm_id.value.size() > 128)
      fail(raw.vm_id.origin, fmt::format("expected 1-128 characters, got {}", quote(raw.vm_id.value)));
    c.vm_id = raw.vm_id.value;
  } else if (const vmm::BootSpec spec = boot_spec(c); !spec.empty()) {
    // The image that makes this VM what it is: the kernel of a firmware boot, not OpenSBI.
    c.vm_id = fs::path(spec.identity_image()).filename().string();
  } else {
    required(raw.vm_id, "vm", "id", nullptr, "when neither [vm] guest nor bios is given");
  }

  required(raw.psk_file, "pair", "psk_file", nullptr);
  c.psk_file = raw.psk_file.value;
  c.psk = load_psk(raw.psk_file);
  finish_fencing(raw, file, c);
  finish_net(raw, file, c, warnings);
  return c;
}

}  // namespace

std::optional<Role> parse_role(std::string_view text) {
  if (text == "primary") return Role::Primary;
  if (text == "secondary") return Role::Secondary;
  return std::nullopt;
}

NodeConfig parse_config(std::string_view text, const std::string& source, const std::string& base_dir,
                        const ConfigOverrides& overrides, std::vector<std::string>* warnings) {
  toml::table root;
  try {
    root = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    throw ConfigError(fmt::format("{}:{}:{}: TOML syntax error: {}", source, e.source().begin.line,
                                  e.source().begin.column, e.description()));
  }
  RawConfig raw;
  FileReader file(source, base_dir);
  file.read(root, raw);
  apply_overrides(overrides, raw);
  std::vector<std::string> found;
  NodeConfig config = finish(raw, file, found);
  for (auto& w : found) {
    if (warnings) warnings->push_back(std::move(w));
    else spdlog::warn("{}", w);
  }
  return config;
}

NodeConfig load_config(const std::string& path, const ConfigOverrides& overrides, std::vector<std::string>* warnings) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) throw ConfigError(fmt::format("{}: cannot read the configuration: is a directory", path));
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(fmt::format("{}: cannot read the configuration: {}", path, std::strerror(errno)));
  std::ostringstream text;
  text << in.rdbuf();
  const fs::path base = fs::absolute(fs::path(path)).parent_path();
  return parse_config(text.str(), path, base.string(), overrides, warnings);
}

}  // namespace tandem::replicator
