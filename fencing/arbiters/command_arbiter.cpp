#include "fencing/arbiters/command_arbiter.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <stdexcept>
#include <string_view>
#include <vector>

namespace tandem::fencing {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The last `kStderrTail` bytes as one line (newlines become " | ").
std::string tail_line(const std::string& text) {
  std::string tail = text.size() > CommandArbiter::kStderrTail ? text.substr(text.size() - CommandArbiter::kStderrTail)
                                                               : text;
  while (!tail.empty() && (tail.back() == '\n' || tail.back() == '\r')) tail.pop_back();
  std::string line;
  for (char c : tail) {
    if (c == '\n') line += " | ";
    else if (c == '\r' || c == '\t') line += ' ';
    else line.push_back(static_cast<unsigned char>(c) < 0x20 ? '?' : c);
  }
  return line;
}

struct Run {
  bool finished = false;  // false = killed on timeout
  int status = 0;         // waitpid status when finished
  std::string err;
};

Run run_command(const std::string& command, milliseconds timeout,
                const std::vector<std::pair<std::string, std::string>>& env) {
  // posix_spawn (vfork-like): no copy of a large daemon's page tables, and nothing but exec
  // runs in the child, which matters in a multi-threaded tandemd.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    bool replaced = false;
    for (const auto& [name, value] : env) replaced |= entry.starts_with(name + "=");
    if (!replaced) env_strings.emplace_back(entry);
  }
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& e : env_strings) envp.push_back(e.data());
  envp.push_back(nullptr);
  const char* argv[] = {"sh", "-c", command.c_str(), nullptr};

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
  posix_spawn_file_actions_t files;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&files);
  posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&files, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&files, pipe_fds[1], 2);
  posix_spawnattr_init(&attr);
  // Its own process group (a timeout kills the shell and everything it started), no signal
  // blocked (tandemd blocks SIGTERM/SIGINT in its threads) and default dispositions.
  posix_spawnattr_setpgroup(&attr, 0);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigfillset(&defaults);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  const int spawn_error = ::posix_spawn(&pid, "/bin/sh", &files, &attr, const_cast<char* const*>(argv), envp.data());
  posix_spawn_file_actions_destroy(&files);
  posix_spawnattr_destroy(&attr);
  ::close(pipe_fds[1]);
  if (spawn_error != 0) {
    ::close(pipe_fds[0]);
    throw std::runtime_error(fmt::format("cannot start /bin/sh: {}", std::strerror(spawn_error)));
  }
  Run run;
  const auto deadline = Clock::now() + timeout;
  bool pipe_open = true;
  for (;;) {
    const pid_t done = ::waitpid(pid, &run.status, WNOHANG);
    if (done == pid) run.finished = true;
    // Drain what is there; wait a little for more while the command runs.
    pollfd p{pipe_fds[0], POLLIN, 0};
    const int wait_ms = run.finished ? 0 : 10;
    while (pipe_open && ::poll(&p, 1, wait_ms) > 0) {
      char buffer[4096];
      const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
      if (n <= 0) {
        pipe_open = false;
        break;
      }
      run.err.append(buffer, static_cast<size_t>(n));
      if (run.err.size() > 64 * 1024) run.err.erase(0, run.err.size() - CommandArbiter::kStderrTail);
      if (!run.finished) break;  // re-check the exit and the deadline
    }
    if (run.finished) break;
    if (Clock::now() >= deadline) {
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &run.status, 0);
      break;
    }
  }
  ::close(pipe_fds[0]);
  return run;
}

}  // namespace

CommandArbiter::CommandArbiter(const ArbiterConfig& config) : config_(config) {
  if (config.fence_command.empty()) throw std::invalid_argument("the command arbiter needs fence_command");
}

std::string CommandArbiter::describe() const { return "command " + config_.fence_command; }

Grant CommandArbiter::acquire(const std::string& node, uint64_t known_epoch) {
  const uint64_t epoch = known_epoch + 1;
  Grant grant;
  grant.epoch = known_epoch;
  Run run;
  try {
    spdlog::warn("fencing the peer: running `{}` (timeout {} ms)", config_.fence_command, config_.timeout.count());
    run = run_command(config_.fence_command, config_.timeout,
                      {{"TANDEM_VM_ID", config_.vm_id}, {"TANDEM_NODE", node}, {"TANDEM_EPOCH", std::to_string(epoch)}});
  } catch (const std::exception& e) {
    grant.outcome = Grant::Outcome::Unreachable;
    grant.why = fmt::format("cannot run the fence command: {}", e.what());
    return grant;
  }
  const std::string tail = tail_line(run.err);
  const std::string suffix = tail.empty() ? std::string() : ": " + tail;
  if (!run.finished) {
    grant.outcome = Grant::Outcome::Unreachable;
    grant.why = fmt::format("fence command did not finish within {} ms (killed){}", config_.timeout.count(), suffix);
  } else if (WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0) {
    grant = {Grant::Outcome::Granted, epoch, milliseconds(0), node, "fence command succeeded: the peer is off"};
  } else if (WIFEXITED(run.status)) {
    grant.outcome = Grant::Outcome::Refused;
    grant.why = fmt::format("fence command exited {}{}", WEXITSTATUS(run.status), suffix);
  } else {
    grant.outcome = Grant::Outcome::Refused;
    grant.why = fmt::format("fence command killed by signal {}{}", WTERMSIG(run.status), suffix);
  }
  if (grant.granted()) {
    spdlog::info("{}", grant.why);
  } else {
    spdlog::error("{}", grant.why);
  }
  return grant;
}

Grant CommandArbiter::advance(const std::string& node, uint64_t epoch) {
  // No epoch store to compare against: the primary drops its silent secondary only once the
  // secondary is confirmed off, so it can never be promoted with its stale replica.
  spdlog::warn("the secondary is silent on every path: powering it off before going on alone");
  return acquire(node, epoch);
}

Grant CommandArbiter::renew(const std::string& node, uint64_t epoch) {
  return {Grant::Outcome::Granted, epoch, milliseconds(0), node, "fenced by command: no lease to renew"};
}

void CommandArbiter::release(const std::string&, uint64_t) {}

}  // namespace tandem::fencing
