// tandemd: the per-host daemon. Loads the configuration, runs one Node (primary or
// secondary of a pair) and serves the control socket that tandemctl talks to.
// Exit status: 0 stopped cleanly (SIGINT/SIGTERM), 1 the node or the control socket failed
// to start or the node ended FAILED, 2 usage or configuration error (one line naming
// file:line: [section] key).
#include <malloc.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "replicator/config.h"
#include "replicator/control.h"
#include "replicator/node.h"

namespace {

using namespace tandem::replicator;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Adds a string flag that, when given, overrides the file's value.
void add_override(CLI::App& app, const std::string& flags, std::optional<std::string>& target,
                  const std::string& help) {
  app.add_option_function<std::string>(flags, [&target](const std::string& value) { target = value; }, help);
}

void setup_logging(const NodeConfig& config) {
  auto logger = spdlog::stderr_color_mt("tandemd");
  spdlog::set_default_logger(logger);
  // The node name on every line: with a pair on one machine (tests, demo) both logs interleave.
  spdlog::set_pattern(fmt::format("%Y-%m-%d %H:%M:%S.%e {} %^%l%$ %v", config.node_name));
  spdlog::set_level(spdlog::level::from_str(config.log_level));
}

const char* signal_name(int signal) { return signal == SIGINT ? "SIGINT" : "SIGTERM"; }

// Turns the first SIGINT/SIGTERM into node.stop(); a second one ends the process at once
// (for a stop that hangs).
class SignalStopper {
 public:
  SignalStopper() : signals_(io_, SIGINT, SIGTERM) {
    wait_next();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~SignalStopper() {
    io_.stop();
    thread_.join();
  }

  void bind(Node& node) {
    std::lock_guard lock(mutex_);
    node_ = &node;
    if (pending_) node_->stop();
  }
  void unbind() {
    std::lock_guard lock(mutex_);
    node_ = nullptr;
  }
  bool signalled() const { return signalled_; }

 private:
  void wait_next() {
    signals_.async_wait([this](const boost::system::error_code& ec, int signal) {
      if (ec) return;
      if (signalled_.exchange(true)) {
        spdlog::warn("second {}: exiting without a clean stop", signal_name(signal));
        spdlog::shutdown();
        std::_Exit(128 + signal);
      }
      spdlog::info("{}: stopping", signal_name(signal));
      {
        std::lock_guard lock(mutex_);
        if (node_) node_->stop();
        else pending_ = true;  // still starting: stop as soon as the node exists
      }
      wait_next();
    });
  }

  boost::asio::io_context io_;
  boost::asio::signal_set signals_;
  std::thread thread_;
  std::mutex mutex_;
  Node* node_ = nullptr;
  bool pending_ = false;
  std::atomic<bool> signalled_{false};
};

// The pre-copy and the log move messages of several MiB (checkpoint parts, their frames,
// parsed copies) on both sides. With glibc's default thresholds each such buffer is a
// fresh mmap whose pages fault in again on every message; on the shared VM that was most of
// the initial sync's CPU (bench/pair, docs/benchmarks.md). Buffers under 32 MiB (glibc's
// ceiling for this) come from the heap and freed ones stay there for the next message,
// up to 128 MiB kept.
void keep_big_buffers() {
  if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 || mallopt(M_TRIM_THRESHOLD, 128 << 20) != 1) {
    spdlog::warn("malloc refused the buffer thresholds: big messages will be mapped afresh each time");
  }
}

}  // namespace

int main(int argc, char** argv) {
  keep_big_buffers();
  CLI::App app{"tandemd: the Tandem per-host daemon. Runs one VM as the primary or the secondary of a\n"
               "fault-tolerant pair and serves a control socket for tandemctl. Flags override the\n"
               "config file. With [fencing] arbiter set, a primary boots and releases output only under the\n"
               "arbiter's lease, and a secondary promotes only when the link and the second heartbeat path\n"
               "are both silent and the arbiter grants it the lease (docs/fencing.md).\n"
               "Exit status: 0 clean stop, 1 startup failure or node FAILED, 2 usage/config error."};
  std::string config_path;
  ConfigOverrides overrides;
  app.add_option("-c,--config", config_path, "TOML configuration file (see deploy/examples/)")->required();
  add_override(app, "--name", overrides.node_name, "Node name: [node] name (default: host name)");
  add_override(app, "--role", overrides.role, "primary | secondary: [pair] role");
  add_override(app, "--listen", overrides.listen, "Replication link address HOST:PORT: [pair] listen");
  add_override(app, "--peer", overrides.peer, "Secondary to protect at start, HOST:PORT: [pair] peer");
  add_override(app, "--console", overrides.console_listen, "Guest console address HOST:PORT: [console] listen");
  add_override(app, "--control", overrides.control_socket, "Control socket path: [control] socket");
  add_override(app, "--guest", overrides.guest, "Guest image (RISC-V ELF64 or raw binary): [vm] guest");
  add_override(app, "--bios", overrides.bios,
               "Firmware (OpenSBI fw_jump) for a Linux boot, instead of --guest: [vm] bios");
  add_override(app, "--kernel", overrides.kernel, "Kernel Image entered through the firmware (needs --bios): [vm] kernel");
  add_override(app, "--initrd", overrides.initrd, "Initramfs for the kernel (needs --kernel): [vm] initrd");
  add_override(app, "--append", overrides.append, "Kernel command line (needs --kernel): [vm] append");
  add_override(app, "--disk", overrides.disk, "Disk image for virtio-blk: [vm] disk");
  app.add_option_function<uint64_t>(
      "--mem", [&overrides](const uint64_t& mib) { overrides.mem_mib = mib; }, "Guest RAM in MiB: [vm] mem_mib");
  add_override(app, "--state-dir", overrides.state_dir, "Directory for the epoch file etc.: [node] state_dir");
  add_override(app, "--log-level", overrides.log_level,
               "trace | debug | info | warn | error | critical | off: [node] log_level");
  add_override(app, "--net", overrides.net,
               "The guest's NIC, as tandem run's --net (tap,ifname=NAME[,mac=..] | user[,hostfwd=..]): replaces [net]");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  std::vector<std::string> warnings;
  NodeConfig config;
  try {
    config = load_config(config_path, overrides, &warnings);
  } catch (const ConfigError& e) {
    std::cerr << "tandemd: " << e.what() << "\n";
    return kExitUsage;
  }
  ::signal(SIGPIPE, SIG_IGN);  // a peer or client that goes away is an error code, not a signal
  setup_logging(config);
  for (const auto& w : warnings) spdlog::warn("{}", w);

  std::error_code fs_error;
  std::filesystem::create_directories(config.state_dir, fs_error);
  if (fs_error) {
    spdlog::error("cannot create state directory {}: {}", config.state_dir, fs_error.message());
    return kExitFailed;
  }

  SignalStopper stopper;  // before the node starts threads, so no signal is missed
  spdlog::info("starting: role {}, vm {}, listen {}, peer {}, console {}, control {}", to_string(config.role),
               config.vm_id, config.listen.empty() ? "-" : config.listen, config.peer.empty() ? "-" : config.peer,
               config.console_listen.empty() ? "-" : config.console_listen, config.control_socket);
  // Test hooks come from the environment here, at the edge (tests/pair).
  if (const char* v = std::getenv("TANDEM_TEST_SYNC_APPLY_DELAY_MS"))
    config.test.sync_apply_delay = std::chrono::milliseconds(std::strtol(v, nullptr, 10));
  const std::string control_socket = config.control_socket;
  Node node(std::move(config));
  try {
    node.start();
  } catch (const std::exception& e) {
    spdlog::error("node failed to start: {}", e.what());
    return kExitFailed;
  }
  NodeControl handler(node);
  std::optional<ControlServer> control;
  try {
    control.emplace(control_socket, handler);
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    node.stop();
    node.wait();
    return kExitFailed;
  }
  stopper.bind(node);
  node.wait();
  stopper.unbind();
  control->stop();
  node.stop();
  // A node that ended by itself in FAILED (not by a signal) is a failure for systemd too.
  const NodeStatus last = node.status();
  if (!stopper.signalled() && last.state == PairState::Failed) {
    spdlog::error("node failed: {}", last.last_error.empty() ? "no reason given" : last.last_error);
    return kExitFailed;
  }
  spdlog::info("stopped");
  return 0;
}
