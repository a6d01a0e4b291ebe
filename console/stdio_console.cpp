#include "console/stdio_console.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>

#include "console/tcp_console.h"
#include "net/endpoint.h"

namespace tandem::console {

StdioConsole::StdioConsole(int in_fd, int out_fd) : in_fd_(in_fd), out_fd_(out_fd) {
  if (::isatty(in_fd_) && ::tcgetattr(in_fd_, &saved_) == 0) {
    termios raw = saved_;
    raw.c_lflag &= ~(ICANON | ECHO);
    raw.c_iflag &= ~(ICRNL | IXON);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    raw_ = ::tcsetattr(in_fd_, TCSANOW, &raw) == 0;
  }
}

StdioConsole::~StdioConsole() {
  flush();
  if (raw_) ::tcsetattr(in_fd_, TCSANOW, &saved_);
}

size_t StdioConsole::read_input(std::vector<uint8_t>& out, size_t max) {
  if (in_closed_ || max == 0) return 0;
  pollfd p{in_fd_, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0 || !(p.revents & (POLLIN | POLLHUP))) return 0;
  uint8_t buf[4096];
  const ssize_t n = ::read(in_fd_, buf, std::min(max, sizeof buf));
  if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
    in_closed_ = true;
    return 0;
  }
  if (n < 0) return 0;
  out.insert(out.end(), buf, buf + n);
  return static_cast<size_t>(n);
}

bool StdioConsole::wait_input(std::chrono::nanoseconds timeout) {
  if (in_closed_) return false;
  flush();  // the guest is waiting: whatever it printed must be visible now
  pollfd p{in_fd_, POLLIN, 0};
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(ms, 1 << 30)));
  return r > 0 && (p.revents & (POLLIN | POLLHUP));
}

void StdioConsole::write_output(std::span<const uint8_t> bytes) {
  out_buffer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  if (out_buffer_.size() >= 4096 || (!bytes.empty() && bytes.back() == '\n')) flush();
}

void StdioConsole::flush() {
  size_t done = 0;
  while (done < out_buffer_.size()) {
    const ssize_t n = ::write(out_fd_, out_buffer_.data() + done, out_buffer_.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // stdout closed: the guest keeps running, its output is lost
    }
    done += static_cast<size_t>(n);
  }
  out_buffer_.clear();
}

std::unique_ptr<hooks::ConsolePort> open_console(const std::string& spec) {
  if (spec == "stdio") return std::make_unique<StdioConsole>();
  if (spec.rfind("tcp:", 0) == 0) {
    net::Endpoint at;
    try {
      at = net::parse_endpoint(spec.substr(4), {.allow_any_port = true, .numeric_host = false});
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument("console '" + spec + "': " + e.what());
    }
    return std::make_unique<TcpConsole>(at.host, at.port);
  }
  throw std::invalid_argument("console '" + spec + "': expected 'stdio' or 'tcp:HOST:PORT'");
}

}  // namespace tandem::console
