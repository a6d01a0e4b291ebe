// tandemctl: the operator's CLI for a running tandemd, over its control socket.
// Exit status: 0 done, 1 the daemon refused the command, 2 usage error or the daemon
// cannot be reached.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "control/client.h"
#include "control/status.h"
#include "drills/cli.h"
#include "fencing/arbiters/disk_record.h"
#include "net/encoding.h"
#include "net/endpoint.h"
#include "net/hmac.h"
#include "tools/tandemctl_status.h"

namespace {

using tandem::control::control_request;
using tandem::control::status_from_json;
using tandem::tools::format_status;
using nlohmann::json;

constexpr int kExitRefused = 1;
constexpr int kExitUsage = 2;

std::string default_socket() {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) return "/run/tandem/tandem.sock";
  return fmt::format("/run/tandem/{}.sock", host);
}

int fail(int status, const std::string& message) {
  std::cerr << "tandemctl: " << message << "\n";
  return status;
}

// `tandemctl keygen`: a fresh pair PSK, hex, from OpenSSL's CSPRNG. With --out the file is
// created 0600 and never overwritten (O_EXCL): replacing one host's key by mistake would
// break the pair, so an operator removes the old file on purpose.
int keygen(const std::string& out_path, int bytes) {
  std::string raw;
  try {
    raw = tandem::net::random_bytes(static_cast<size_t>(bytes));
  } catch (const std::runtime_error& e) {
    return fail(kExitRefused, fmt::format("keygen: {} (no entropy?)", e.what()));
  }
  const std::string hex = tandem::net::to_hex(raw) + "\n";
  if (out_path.empty() || out_path == "-") {
    std::cout << hex;
    return 0;
  }
  const int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return fail(kExitRefused, fmt::format("keygen: cannot create {}: {}", out_path, std::strerror(errno)));
  ::fchmod(fd, 0600);  // the umask may only have narrowed it; make it exactly 0600
  const bool written = ::write(fd, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size());
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!written || !synced) {
    ::unlink(out_path.c_str());
    return fail(kExitRefused, fmt::format("keygen: writing {} failed", out_path));
  }
  std::cerr << fmt::format("tandemctl: wrote a {}-byte key to {} (mode 0600); copy it to the other host and the "
                           "witness over a secure channel\n", bytes, out_path);
  return 0;
}

// `tandemctl init-lease`: the disk arbiter's lease file, created once by the operator (the
// daemons never create it: docs/fencing.md, ## Arbiters). Refused if the file exists.
int init_lease(const std::string& path, const std::string& vm_id) {
  try {
    tandem::fencing::disk::init_lease_file(path, vm_id);
  } catch (const std::exception& e) {
    return fail(kExitRefused, fmt::format("init-lease: {}", e.what()));
  }
  std::cerr << fmt::format("tandemctl: created the lease file {} for vm {}; the first node is granted it one lease "
                           "ttl after it first reads it\n",
                           path, vm_id);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tandemctl: inspect and steer a running tandemd over its control socket.\n"
               "Exit status: 0 done, 1 refused by the daemon, 2 usage error or daemon unreachable."};
  std::string socket_path = default_socket();
  double timeout_s = 10;
  app.add_option("-c,--control", socket_path, "The daemon's control socket ([control] socket in its config)")
      ->envname("TANDEM_CONTROL")
      ->capture_default_str();
  app.add_option("--timeout", timeout_s, "Seconds to wait for the daemon's reply")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  app.require_subcommand(1);

  bool as_json = false;
  auto* status_cmd = app.add_subcommand(
      "status", "Role, state, epoch, icount, lag, log rate, last audit, sync progress, console and peer");
  status_cmd->add_flag("--json", as_json, "Print the status as one JSON object instead of text");

  std::string peer;
  auto* protect_cmd = app.add_subcommand("protect", "Start protecting this (primary) VM with the secondary at PEER");
  protect_cmd->add_option("PEER", peer, "The secondary's replication address, HOST:PORT (numeric host)")->required();
  app.add_subcommand("unprotect", "Stop replicating; the primary continues STANDALONE");
  app.add_subcommand("failover", "Planned switchover: hand the VM over to the secondary");
  std::string keygen_out;
  int keygen_bytes = 32;
  auto* keygen_cmd = app.add_subcommand(
      "keygen", "Generate a pair PSK (hex, OpenSSL RAND_bytes); needs no daemon. Same key on both hosts and the witness");
  keygen_cmd->add_option("-o,--out", keygen_out, "Create FILE (mode 0600, refused if it exists) instead of printing");
  keygen_cmd->add_option("--bytes", keygen_bytes, "Random bytes in the key (hex doubles it)")
      ->check(CLI::Range(16, 1024))
      ->capture_default_str();
  std::string lease_path, lease_vm;
  auto* init_lease_cmd = app.add_subcommand(
      "init-lease", "Create the disk arbiter's lease file ([fencing] disk_path) once, on the shared storage; needs no "
                    "daemon. Refused if the file exists");
  init_lease_cmd->add_option("--disk-path", lease_path, "The lease file ([fencing] disk_path of both tandemds)")
      ->required();
  init_lease_cmd->add_option("--vm", lease_vm, "The VM's id ([vm] id)")->required();
  tandem::drills::DrillCliOptions drill_options;
  auto* drill_cmd = tandem::drills::add_drill_subcommand(app, drill_options);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : kExitUsage;
  }

  if (*keygen_cmd) return keygen(keygen_out, keygen_bytes);
  if (*init_lease_cmd) return init_lease(lease_path, lease_vm);
  if (*drill_cmd) return tandem::drills::run_drill_command(drill_options, std::cout, std::cerr);

  json request;
  if (*status_cmd) {
    request = {{"cmd", "status"}};
  } else if (*protect_cmd) {
    try {
      tandem::net::parse_endpoint(peer);
    } catch (const std::invalid_argument& e) {
      return fail(kExitUsage, fmt::format("protect: {}", e.what()));
    }
    request = {{"cmd", "protect"}, {"peer", peer}};
  } else {
    request = {{"cmd", app.get_subcommands().front()->get_name()}};
  }
  const std::string cmd = request["cmd"];

  json reply;
  try {
    reply = control_request(socket_path, request, std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000)));
  } catch (const std::exception& e) {
    return fail(kExitUsage, e.what());
  }
  if (!reply["ok"].get<bool>()) {
    const std::string error = reply.contains("error") && reply["error"].is_string() ? reply["error"].get<std::string>()
                                                                                     : "no reason given";
    return fail(kExitRefused, fmt::format("{} refused: {}", cmd, error));
  }

  if (*status_cmd) {
    if (!reply.contains("status")) return fail(kExitUsage, "malformed reply: no \"status\" object");
    if (as_json) {
      std::cout << reply["status"].dump(2) << "\n";
      return 0;
    }
    try {
      std::cout << format_status(status_from_json(reply["status"]));
    } catch (const std::exception& e) {
      return fail(kExitUsage, fmt::format("malformed status reply: {}", e.what()));
    }
    return 0;
  }
  // The daemon accepted the command; progress shows in `tandemctl status`.
  if (*protect_cmd) std::cout << fmt::format("protect {}: accepted\n", peer);
  else std::cout << fmt::format("{}: accepted\n", cmd);
  return 0;
}
