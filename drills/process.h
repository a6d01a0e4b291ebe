// A child process owned by a drill: started with fork/exec, output to a log file, killed
// with the parent (PR_SET_PDEATHSIG), and always reaped. The lab keeps every process it
// starts in one of these, so an error, an exception or Ctrl-C never leaves one behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace tandem::drills {

class ChildProcess {
 public:
  ChildProcess() = default;
  // Starts argv[0] (a path) with stdin from /dev/null and stdout+stderr appended to
  // `log_path`. Throws std::runtime_error when it cannot be started. Call from the thread
  // that owns the lab: the death signal is tied to the creating thread.
  ChildProcess(std::vector<std::string> argv, const std::string& log_path);
  ~ChildProcess();  // stop(): SIGKILL if still running, then reap
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();                 // not yet exited (reaps it if it has)
  int exit_status() const { return status_; }  // valid once !running(): code, or 128+signal
  void signal(int sig);           // no-op once exited
  void kill9();                   // SIGKILL + reap (SIGCONT first if stopped)
  // SIGTERM, wait up to `grace`, then SIGKILL. Reaps. Idempotent.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000));
  // Waits up to `timeout` for the process to exit by itself; true if it did.
  bool wait_exit(std::chrono::milliseconds timeout);
  const std::string& log_path() const { return log_path_; }
  std::string describe() const { return describe_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  bool stopped_ = false;  // SIGSTOP sent and no SIGCONT since
  std::string log_path_;
  std::string describe_;
};

// The last `bytes` of a file (for error messages quoting a daemon's log).
std::string file_tail(const std::string& path, size_t bytes = 2000);

}  // namespace tandem::drills
