#include "drills/lab.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "control/client.h"
#include "net/encoding.h"
#include "net/hmac.h"

namespace tandem::drills {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

std::vector<uint16_t> free_ports(size_t count) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < count; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) break;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ::close(fd);
      break;
    }
    fds.push_back(fd);
    ports.push_back(ntohs(addr.sin_port));
  }
  for (int fd : fds) ::close(fd);
  if (ports.size() != count) throw std::runtime_error("cannot find free TCP ports on 127.0.0.1");
  return ports;
}

namespace {

void write_file(const fs::path& path, const std::string& text, fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw std::runtime_error(fmt::format("cannot write {}", path.string()));
  out << text;
  out.close();
  fs::permissions(path, perms);
}

std::string local(uint16_t port) { return fmt::format("127.0.0.1:{}", port); }

// Waits for `ready` (polled) while the process stays alive; the message quotes its log.
template <typename Ready>
void wait_for(ChildProcess& process, std::chrono::milliseconds timeout, const std::string& what, Ready ready) {
  const auto deadline = Clock::now() + timeout;
  while (!ready()) {
    throw_if_interrupted();
    if (!process.running())
      throw std::runtime_error(fmt::format("{}: exited with status {} while waiting for {}\n{}", process.describe(),
                                           process.exit_status(), what, file_tail(process.log_path())));
    if (Clock::now() >= deadline)
      throw std::runtime_error(fmt::format("timed out waiting for {}\n{}", what, file_tail(process.log_path())));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

// Whether this tandemd parses the [fencing] section: a config whose only line is a bad
// lease_ms is refused either way (exit 2, nothing started), and the message tells which.
bool tandemd_knows_fencing(const fs::path& tandemd, const fs::path& dir) {
  const auto config = dir / "fencing-probe.toml";
  const auto log = dir / "fencing-probe.log";
  write_file(config, "[fencing]\nlease_ms = \"probe\"\n");
  ChildProcess probe({tandemd.string(), "--config", config.string()}, log.string());
  if (!probe.wait_exit(std::chrono::seconds(10))) return false;
  const std::string said = file_tail(log.string());
  fs::remove(config);
  fs::remove(log);
  return said.find("lease_ms") != std::string::npos && said.find("unknown section") == std::string::npos;
}

}  // namespace

Lab::Lab(LabOptions options) : options_(std::move(options)) {
  const fs::path bin(options_.bin_dir);
  for (const char* tool : {"tandemd", "tandem-netsim"})
    if (!fs::exists(bin / tool))
      throw UsageError(fmt::format("--lab needs {} in {} (build it, or give --build-dir/--bin-dir)", tool, bin.string()));
  if (!fs::exists(options_.guest))
    throw UsageError(fmt::format("--lab needs the kv guest: {} does not exist (build target guests, or give --guest)",
                                 options_.guest));
  if (!options_.arbiter.empty() && options_.arbiter != "witness" && options_.arbiter != "none")
    throw UsageError(fmt::format("--arbiter {}: the lab runs \"witness\" or \"none\"", options_.arbiter));

  char templ[] = "/tmp/tandem-drill-XXXXXX";
  if (!::mkdtemp(templ)) throw std::runtime_error("cannot create a temp dir under /tmp");
  dir_ = templ;
  try {
    // The witness needs both halves: the tandem-witness binary and a tandemd with [fencing].
    const bool have_witness = fs::exists(bin / "tandem-witness");
    const bool have_fencing = tandemd_knows_fencing(bin / "tandemd", dir_);
    arbiter_ = options_.arbiter.empty() ? (have_witness && have_fencing ? "witness" : "none") : options_.arbiter;
    if (arbiter_ == "witness" && !have_witness)
      throw UsageError(fmt::format("--arbiter witness: no tandem-witness in {}", bin.string()));
    if (arbiter_ == "witness" && !have_fencing)
      throw UsageError(fmt::format("--arbiter witness: {}/tandemd does not know the [fencing] section", bin.string()));
    use_witness_ = arbiter_ == "witness";
    psk_file_ = (fs::path(dir_) / "pair.psk").string();
    write_file(psk_file_, net::to_hex(net::random_bytes(32)) + "\n");  // mode 0600: others may not read a key

    // Per slot: replication listener, console, heartbeat listener, and three proxies
    // (replication towards it, heartbeat towards it, its witness path); plus the witness.
    const auto ports = free_ports(2 * 6 + 1);
    for (int i = 0; i < 2; ++i) {
      Slot& s = slots_[i];
      s.name.assign(1, static_cast<char>('a' + i));  // "a", "b"
      s.repl_port = ports[i * 6 + 0];
      s.console_port = ports[i * 6 + 1];
      s.heartbeat_port = ports[i * 6 + 2];
      s.repl_proxy = ports[i * 6 + 3];
      s.heartbeat_proxy = ports[i * 6 + 4];
      s.witness_proxy = ports[i * 6 + 5];
    }
    witness_port_ = ports[12];
    if (use_witness_) start_witness();

    netsim_socket_ = (fs::path(dir_) / "netsim.sock").string();
    const std::string links = write_links_file();
    netsim_ = ChildProcess({(bin / "tandem-netsim").string(), "serve", "--config", links, "--control", netsim_socket_,
                            "--seed", std::to_string(options_.seed), "--event-log",
                            (fs::path(dir_) / "netsim-events.jsonl").string()},
                           (fs::path(dir_) / "netsim.log").string());
    wait_for(netsim_, std::chrono::seconds(20), "netsim's control socket", [&] {
      try {
        return netsim_request(netsim_socket_, {{"cmd", "list"}}, std::chrono::milliseconds(500))
            .value("ok", false);
      } catch (const std::exception&) {
        return false;
      }
    });
  } catch (...) {
    witness_.kill9();
    netsim_.kill9();
    if (!options_.keep) fs::remove_all(dir_);
    throw;
  }
}

Lab::~Lab() {
  for (auto& s : slots_) s.process.stop(std::chrono::milliseconds(3000));
  netsim_.stop(std::chrono::milliseconds(3000));
  witness_.stop(std::chrono::milliseconds(3000));
  std::error_code ec;
  if (!options_.keep) fs::remove_all(dir_, ec);
}

std::string Lab::write_links_file() {
  std::string text = fmt::format("seed = {}\n", options_.seed);
  auto link = [&](const std::string& name, uint16_t listen, uint16_t target, const std::string& from,
                  const std::string& to) {
    text += fmt::format("\n[[link]]\nname = \"{}\"\nprotocol = \"tcp\"\nlisten = \"{}\"\ntarget = \"{}\"\n"
                        "from = \"{}\"\nto = \"{}\"\n",
                        name, local(listen), local(target), from, to);
  };
  for (int i = 0; i < 2; ++i) {
    const Slot& self = slots_[i];
    const Slot& peer = slots_[1 - i];
    // The proxy listening on self.repl_proxy forwards to self: the peer connects through it.
    link(fmt::format("repl-{}-{}", peer.name, self.name), self.repl_proxy, self.repl_port, peer.name, self.name);
    if (use_witness_) {
      link(fmt::format("hb-{}-{}", peer.name, self.name), self.heartbeat_proxy, self.heartbeat_port, peer.name,
           self.name);
      link(fmt::format("witness-{}", self.name), self.witness_proxy, witness_port_, self.name, "witness");
    }
  }
  const auto path = fs::path(dir_) / "links.toml";
  write_file(path, text);
  return path.string();
}

void Lab::start_witness() {
  const fs::path bin(options_.bin_dir);
  witness_ = ChildProcess({(bin / "tandem-witness").string(), "--listen", local(witness_port_), "--state-file",
                           (fs::path(dir_) / "witness.state").string(), "--psk-file", psk_file_},
                          (fs::path(dir_) / "witness.log").string());
  wait_for(witness_, std::chrono::seconds(20), "the witness to listen", [&] {
    KvConnection probe;
    return probe.connect({"127.0.0.1", witness_port_}, std::chrono::milliseconds(200));
  });
}

void Lab::start_node(int slot, bool primary) {
  Slot& s = slots_[slot];
  const Slot& peer = slots_[1 - slot];
  ++s.generation;
  if (s.generation > 1 && !options_.keep) {
    // The node it replaces is stopped: its files matter only for a post-mortem (--keep).
    std::error_code ignored;
    fs::remove_all(fs::path(dir_) / fmt::format("{}.{}", s.name, s.generation - 1), ignored);
  }
  const fs::path node_dir = fs::path(dir_) / fmt::format("{}.{}", s.name, s.generation);
  fs::create_directories(node_dir);
  const auto disk = node_dir / "disk.img";
  {
    std::ofstream(disk, std::ios::binary).close();
    fs::resize_file(disk, 1 << 20);
  }
  s.socket = (node_dir / "ctl.sock").string();
  std::string config = fmt::format(
      "[node]\nname = \"{}\"\nstate_dir = \"{}\"\nlog_level = \"info\"\n"
      "[vm]\ndisk = \"{}\"\nid = \"kv\"\nmem_mib = 64\n{}"
      "[pair]\nrole = \"{}\"\nlisten = \"{}\"\npsk_file = \"{}\"\nheartbeat_ms = {}\nheartbeat_misses = {}\n"
      "max_lag_ms = 100\n"
      "[console]\nlisten = \"{}\"\n[control]\nsocket = \"{}\"\n",
      s.name, (node_dir / "state").string(), disk.string(),
      primary ? fmt::format("guest = \"{}\"\n", options_.guest) : std::string(), primary ? "primary" : "secondary",
      local(s.repl_port), psk_file_, options_.heartbeat_ms, options_.heartbeat_misses, local(s.console_port),
      s.socket);
  if (use_witness_) {
    // Our heartbeat listener is reached through the proxy in front of it; we reach the
    // peer's through the proxy in front of the peer's; our witness path has its own proxy.
    config += fmt::format(
        "[fencing]\narbiter = \"witness\"\nwitness = \"{}\"\nlease_ms = {}\narbiter_timeout_ms = {}\n"
        "heartbeat_listen = \"{}\"\nheartbeat_peer = \"{}\"\nheartbeat_ms = {}\nheartbeat_misses = {}\n",
        local(s.witness_proxy), options_.lease_ms, options_.arbiter_timeout_ms, local(s.heartbeat_port),
        local(peer.heartbeat_proxy), options_.heartbeat_ms, options_.heartbeat_misses);
  }
  const auto config_path = node_dir / "node.toml";
  write_file(config_path, config);
  s.process = ChildProcess({(fs::path(options_.bin_dir) / "tandemd").string(), "--config", config_path.string()},
                           (node_dir / "tandemd.log").string());
  wait_control(slot);
}

void Lab::wait_control(int slot) {
  Slot& s = slots_[slot];
  wait_for(s.process, std::chrono::seconds(30), fmt::format("{}'s control socket", s.name),
           [&] { return node_status(s.socket).has_value(); });
}

void Lab::protect(int primary_slot, int secondary_slot) {
  const std::string peer = local(slots_[secondary_slot].repl_proxy);
  // A primary that has just started may refuse until it holds the lease: ask again.
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while (true) {
    const json reply = control::control_request(slots_[primary_slot].socket, {{"cmd", "protect"}, {"peer", peer}});
    if (reply.value("ok", false)) return;
    if (Clock::now() >= deadline)
      throw std::runtime_error(fmt::format("{}: protect {} refused: {}", slots_[primary_slot].name, peer,
                                           reply.value("error", std::string("no reason"))));
    sleep_interruptible(std::chrono::milliseconds(100));
  }
}

void Lab::wait_protected(int primary_slot, int secondary_slot) {
  Slot& p = slots_[primary_slot];
  Slot& s = slots_[secondary_slot];
  const auto deadline = Clock::now() + options_.protect_timeout;
  auto next_retry = Clock::now() + std::chrono::seconds(5);
  while (true) {
    throw_if_interrupted();
    for (Slot* n : {&p, &s})
      if (!n->process.running())
        throw std::runtime_error(fmt::format("{} exited with status {} while waiting for PROTECTED\n{}", n->name,
                                             n->process.exit_status(), file_tail(n->process.log_path())));
    const auto ps = node_status(p.socket);
    const auto ss = node_status(s.socket);
    if (ps && ss && is_protected_pair(*ps, *ss)) return;
    if (Clock::now() >= deadline)
      throw std::runtime_error(fmt::format("timed out waiting for {} and {} to be PROTECTED\n--- {} ---\n{}\n--- {} ---\n{}",
                                           p.name, s.name, p.name, file_tail(p.process.log_path()), s.name,
                                           file_tail(s.process.log_path())));
    // A protect whose sync attempt failed leaves the primary STANDALONE: ask again, as an
    // operator would.
    if (Clock::now() >= next_retry && ps && ps->value("state", std::string()) == "STANDALONE") {
      protect(primary_slot, secondary_slot);
      next_retry = Clock::now() + std::chrono::seconds(5);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void Lab::start_pair() {
  start_node(1, /*primary=*/false);
  start_node(0, /*primary=*/true);
  protect(0, 1);
  wait_protected(0, 1);
}

std::string Lab::describe() const {
  return fmt::format("lab {} (arbiter {}, heartbeat {} ms x {})", dir_, arbiter_, options_.heartbeat_ms,
                     options_.heartbeat_misses);
}

std::string Lab::control_socket(int slot) const { return slots_.at(slot).socket; }

Endpoint Lab::console(int slot) const { return {"127.0.0.1", slots_.at(slot).console_port}; }

LinkSet Lab::links(int primary_slot) const {
  const std::string p = slots_.at(primary_slot).name;
  const std::string s = slots_.at(1 - primary_slot).name;
  LinkSet set;
  set.replication = {fmt::format("repl-{}-{}", p, s), fmt::format("repl-{}-{}", s, p)};
  if (use_witness_) {
    set.heartbeat = {fmt::format("hb-{}-{}", p, s), fmt::format("hb-{}-{}", s, p)};
    set.primary_witness = {fmt::format("witness-{}", p)};
  }
  return set;
}

void Lab::kill9(int slot) { slots_.at(slot).process.kill9(); }
void Lab::freeze(int slot) { slots_.at(slot).process.signal(SIGSTOP); }
void Lab::thaw(int slot) { slots_.at(slot).process.signal(SIGCONT); }

void Lab::kill_witness() {
  if (!use_witness_) throw std::logic_error("no witness in this lab");
  witness_.kill9();
}

void Lab::restart_witness() {
  if (!use_witness_) throw std::logic_error("no witness in this lab");
  if (!witness_.running()) start_witness();
}

void Lab::cleanup_faults() {
  for (auto& s : slots_) s.process.signal(SIGCONT);
  try {
    netsim_request(netsim_socket_, {{"cmd", "heal"}}, std::chrono::seconds(2));
    netsim_request(netsim_socket_, {{"cmd", "clear"}}, std::chrono::seconds(2));
  } catch (const std::exception&) {
  }
  if (use_witness_ && !witness_.running()) {
    try {
      start_witness();
    } catch (const std::exception&) {
    }
  }
}

void Lab::reprotect() {
  // The survivor: the live primary with the highest epoch (it has the newest state).
  int survivor = -1;
  uint64_t best_epoch = 0;
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (survivor < 0) {
    throw_if_interrupted();
    for (int i = 0; i < 2; ++i) {
      if (!slots_[i].process.running()) continue;
      const auto st = node_status(slots_[i].socket);
      if (st && is_live_primary(*st) && (survivor < 0 || st->value("epoch", uint64_t{0}) > best_epoch)) {
        survivor = i;
        best_epoch = st->value("epoch", uint64_t{0});
      }
    }
    if (survivor < 0) {
      if (Clock::now() >= deadline)
        throw std::runtime_error(fmt::format("re-protect: no node is a live primary\n--- a ---\n{}\n--- b ---\n{}",
                                             file_tail(slots_[0].process.log_path()),
                                             file_tail(slots_[1].process.log_path())));
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  const int other = 1 - survivor;
  // Already whole again (the pair healed by itself)? Give it a moment to finish a resync.
  const auto settle = Clock::now() + std::chrono::seconds(2);
  while (slots_[other].process.running() && Clock::now() < settle) {
    const auto ps = node_status(slots_[survivor].socket);
    const auto ss = node_status(slots_[other].socket);
    if (ps && ss && is_protected_pair(*ps, *ss)) return;
    sleep_interruptible(std::chrono::milliseconds(50));
  }
  // Rebuild the other side as a fresh secondary (a host that comes back empty).
  slots_[other].process.stop(std::chrono::milliseconds(3000));
  start_node(other, /*primary=*/false);
  protect(survivor, other);
  wait_protected(survivor, other);
}

}  // namespace tandem::drills
