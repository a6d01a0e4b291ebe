#include "drills/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <thread>

#include <fmt/format.h>

namespace tandem::drills {

ChildProcess::ChildProcess(std::vector<std::string> argv, const std::string& log_path) : log_path_(log_path) {
  if (argv.empty()) throw std::invalid_argument("ChildProcess: empty argv");
  describe_ = argv[0];
  for (size_t i = 1; i < argv.size(); ++i) describe_ += " " + argv[i];
  if (::access(argv[0].c_str(), X_OK) != 0)
    throw std::runtime_error(fmt::format("{}: not an executable ({})", argv[0], std::strerror(errno)));
  const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error(fmt::format("{}: {}", log_path, std::strerror(errno)));
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    ::close(log_fd);
    throw std::runtime_error(fmt::format("fork: {}", std::strerror(e)));
  }
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec. Die with the drill, whatever ends it.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (::getppid() != parent) ::_exit(127);
    // The drill blocks or catches SIGINT/SIGTERM; the daemon must see the defaults.
    // SIGPIPE stays ignored (inherited across exec): a proxy or daemon writing to a peer
    // the drill just killed must get EPIPE, not die with it.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGPIPE, SIG_IGN);
    const int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, 0);
    ::dup2(log_fd, 1);
    ::dup2(log_fd, 2);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(log_fd);
  pid_ = pid;
}

ChildProcess::~ChildProcess() { kill9(); }

ChildProcess::ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    kill9();
    pid_ = std::exchange(other.pid_, -1);
    status_ = other.status_;
    stopped_ = other.stopped_;
    log_path_ = std::move(other.log_path_);
    describe_ = std::move(other.describe_);
  }
  return *this;
}

bool ChildProcess::running() {
  if (pid_ < 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  status_ = r == pid_ ? (WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)) : -1;
  pid_ = -1;
  return false;
}

void ChildProcess::signal(int sig) {
  if (!running()) return;
  ::kill(pid_, sig);
  if (sig == SIGSTOP) stopped_ = true;
  if (sig == SIGCONT) stopped_ = false;
}

bool ChildProcess::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

void ChildProcess::kill9() {
  if (pid_ < 0) return;
  if (stopped_) ::kill(pid_, SIGCONT);
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  pid_ = -1;
  stopped_ = false;
}

void ChildProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return;
  if (stopped_) signal(SIGCONT);  // a stopped process cannot act on SIGTERM
  signal(SIGTERM);
  if (!wait_exit(grace)) kill9();
}

std::string file_tail(const std::string& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  return text.size() > bytes ? text.substr(text.size() - bytes) : text;
}

}  // namespace tandem::drills
