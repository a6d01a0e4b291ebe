#include "drills/pair_env.h"

#include <signal.h>

#include <cerrno>
#include <cstring>

#include <array>
#include <atomic>
#include <thread>

#include <fmt/format.h>

#include "drills/external_pair.h"
#include "control/client.h"
#include "net/json_lines.h"

namespace tandem::drills {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

namespace {
std::atomic<bool> g_interrupt{false};
static_assert(std::atomic<bool>::is_always_lock_free, "request_interrupt runs in a signal handler");
}  // namespace

void request_interrupt() { g_interrupt.store(true); }
bool interrupt_requested() { return g_interrupt.load(); }
void throw_if_interrupted() {
  if (g_interrupt.load()) throw Interrupted();
}
void sleep_interruptible(std::chrono::milliseconds duration) {
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
    throw_if_interrupted();
    std::this_thread::sleep_for(std::min<Clock::duration>(std::chrono::milliseconds(10), end - Clock::now()));
  }
}

json netsim_request(const std::string& socket, const json& request, std::chrono::milliseconds timeout) {
  return net::json_lines_request(socket, request, timeout, " (is tandem-netsim running?)", 64u << 20);
}

std::optional<json> node_status(const std::string& socket, int timeout_ms) {
  try {
    json reply = control::control_request(socket, {{"cmd", "status"}}, std::chrono::milliseconds(timeout_ms));
    if (!reply.value("ok", false) || !reply.contains("status") || !reply["status"].is_object()) return std::nullopt;
    return reply["status"];
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

bool is_live_primary(const json& status) {
  if (status.value("role", std::string()) != "primary") return false;
  const std::string state = status.value("state", std::string());
  if (state != "STANDALONE" && state != "SYNCING" && state != "PROTECTED") return false;  // FENCED, FAILED, ...
  if (auto it = status.find("fencing"); it != status.end() && it->is_object() && it->value("fenced", false))
    return false;
  return true;
}

bool is_protected_pair(const json& primary, const json& secondary) {
  return primary.value("role", std::string()) == "primary" && primary.value("state", std::string()) == "PROTECTED" &&
         secondary.value("role", std::string()) == "secondary" &&
         secondary.value("state", std::string()) == "PROTECTED";
}

// ---------------------------------------------------------------------------------------
// ExternalPair

ExternalPair::ExternalPair(std::string control_a, std::string control_b, std::string netsim_socket,
                           std::chrono::seconds reprotect_timeout)
    : control_a_(std::move(control_a)), control_b_(std::move(control_b)), netsim_socket_(std::move(netsim_socket)),
      reprotect_timeout_(reprotect_timeout) {
  for (int slot = 0; slot < 2; ++slot) {
    const std::string& socket = control_socket(slot);
    const auto status = node_status(socket, 3000);
    if (!status) throw UsageError(fmt::format("{}: no tandemd answers on this control socket", socket));
    const std::string console = status->value("console", std::string());
    if (console.empty())
      throw UsageError(fmt::format("{}: the node reports no console address ([console] listen is required)", socket));
    try {
      consoles_[slot] = parse_endpoint_text(console);
    } catch (const std::invalid_argument& e) {
      throw UsageError(fmt::format("{}: console {}", socket, e.what()));
    }
  }
  if (!netsim_socket_.empty()) {
    try {
      netsim_request(netsim_socket_, {{"cmd", "list"}}, std::chrono::seconds(3));
    } catch (const std::exception& e) {
      throw UsageError(fmt::format("--netsim {}: {}", netsim_socket_, e.what()));
    }
  }
}

std::string ExternalPair::describe() const {
  return fmt::format("pair {} + {}{}", control_a_, control_b_,
                     netsim_socket_.empty() ? std::string() : fmt::format(" (netsim {})", netsim_socket_));
}

LinkSet ExternalPair::links(int) const { return LinkSet{{"repl"}, {"hb2"}, {"witness-p"}}; }

int ExternalPair::pid_of(int slot) const {
  const auto status = node_status(control_socket(slot), 2000);
  if (!status) throw std::runtime_error(fmt::format("{}: no answer, cannot find its pid", control_socket(slot)));
  const int pid = status->value("pid", 0);
  if (pid <= 0)
    throw UsageError(fmt::format("{}: the status has no \"pid\"; this tandemd cannot be driven from outside, use --lab",
                                 control_socket(slot)));
  return pid;
}

void ExternalPair::send(int slot, int sig) {
  const int pid = sig == SIGCONT && frozen_pid_[slot] > 0 ? frozen_pid_[slot] : pid_of(slot);
  if (::kill(pid, sig) != 0)
    throw std::runtime_error(fmt::format("kill({}, {}): {}", pid, sig, std::strerror(errno)));
  frozen_pid_[slot] = sig == SIGSTOP ? pid : -1;
}

void ExternalPair::kill9(int slot) { send(slot, SIGKILL); }
void ExternalPair::freeze(int slot) { send(slot, SIGSTOP); }
void ExternalPair::thaw(int slot) {
  if (frozen_pid_[slot] > 0) send(slot, SIGCONT);
}
void ExternalPair::kill_witness() { throw UsageError("this drill kills the witness: it needs --lab"); }
void ExternalPair::restart_witness() { throw UsageError("this drill restarts the witness: it needs --lab"); }

void ExternalPair::reprotect() {
  const auto deadline = Clock::now() + reprotect_timeout_;
  while (true) {
    const auto a = node_status(control_a_);
    const auto b = node_status(control_b_);
    if (a && b && (is_protected_pair(*a, *b) || is_protected_pair(*b, *a))) return;
    if (Clock::now() >= deadline)
      throw std::runtime_error(fmt::format(
          "the pair is not PROTECTED again after {} s: restart the lost node as a secondary and `tandemctl protect` it "
          "(or let the cluster manager do it), then run the next iteration",
          reprotect_timeout_.count()));
    sleep_interruptible(std::chrono::milliseconds(100));
  }
}

void ExternalPair::cleanup_faults() {
  for (int slot = 0; slot < 2; ++slot)
    if (frozen_pid_[slot] > 0) ::kill(frozen_pid_[slot], SIGCONT), frozen_pid_[slot] = -1;
  if (netsim_socket_.empty()) return;
  try {
    // Only what a drill sets: its named partition and faults on the links it names.
    netsim_request(netsim_socket_, {{"cmd", "heal"}, {"name", "drill"}}, std::chrono::seconds(2));
    const LinkSet set = links(0);
    for (const auto* group : {&set.replication, &set.heartbeat, &set.primary_witness})
      for (const auto& link : *group)
        netsim_request(netsim_socket_, {{"cmd", "clear"}, {"link", link}}, std::chrono::seconds(2));
  } catch (const std::exception&) {
  }
}

}  // namespace tandem::drills
