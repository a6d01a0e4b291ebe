#pragma once
// Starting and reaping the real binaries the tests drive as an operator would (tandem,
// tandemd, tandemctl, tandem-witness): a child process with its output in files, an exit
// status that says how it ended, and a generous timeout that fails the test, never hangs it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace tandem::test {

// Runs `binary args...` with stdin from /dev/null, stdout into `out_path` and stderr into
// `err_path` (created or truncated; "" is /dev/null; the same path for both is one file).
// Returns the child's pid; a binary that cannot be executed exits 127.
inline pid_t spawn_process(const std::string& binary, const std::vector<std::string>& args,
                           const std::string& out_path, const std::string& err_path) {
  // Everything that allocates happens before fork: the test process has threads.
  std::vector<char*> argv{const_cast<char*>(binary.c_str())};
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const char* out_file = out_path.empty() ? "/dev/null" : out_path.c_str();
  const char* err_file = err_path.empty() ? "/dev/null" : err_path.c_str();
  const bool shared = out_path == err_path;
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int in = ::open("/dev/null", O_RDONLY);
    const int out = ::open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = shared ? out : ::open(err_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for `pid` and returns its exit status, or 128+signal when a signal ended it. After
// `timeout` it kills the child, adds a test failure naming `what`, and returns 128+SIGKILL.
inline int wait_exit_status(pid_t pid, std::chrono::milliseconds timeout, const std::string& what) {
  int wstatus = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (::waitpid(pid, &wstatus, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &wstatus, 0);
      ADD_FAILURE() << what << " did not finish within " << timeout.count() << " ms";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
}

// The whole file ("" when it does not exist).
inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace tandem::test
