#include "console/tcp_console.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tandem::console {

namespace asio = boost::asio;
using asio::ip::tcp;

TcpConsole::TcpConsole(const std::string& host, uint16_t port, size_t max_pending_output, size_t max_pending_input)
    : acceptor_(io_), max_pending_output_(max_pending_output), max_pending_input_(std::max<size_t>(max_pending_input, 1)) {
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(host, ec);
  if (ec) throw std::invalid_argument("console: '" + host + "' is not a numeric IP address");
  const tcp::endpoint endpoint(address, port);
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(tcp::acceptor::reuse_address(true));
  acceptor_.bind(endpoint, ec);
  if (ec) {
    throw std::runtime_error("console: cannot listen on " + host + ":" + std::to_string(port) +
                             ": " + ec.message());
  }
  acceptor_.listen();
  port_ = acceptor_.local_endpoint().port();
  accept_next();
  thread_ = std::thread([this] { io_.run(); });
}

TcpConsole::~TcpConsole() {
  // Give the I/O thread a moment to send what the guest printed last, then stop.
  asio::post(io_, [this] {
    boost::system::error_code ec;
    acceptor_.close(ec);
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
  while (std::chrono::steady_clock::now() < deadline) {
    {
      std::lock_guard lock(mutex_);
      if (pending_output_.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  io_.stop();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mutex_);
  set_direct_client_locked(-1);
}

void TcpConsole::set_direct_client_locked(int fd) {
  if (direct_fd_ >= 0) ::close(direct_fd_);
  direct_fd_ = fd >= 0 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
}

uint64_t TcpConsole::clients_accepted() const {
  std::lock_guard lock(mutex_);
  return clients_accepted_;
}

size_t TcpConsole::pending_input() const {
  std::lock_guard lock(mutex_);
  return input_.size();
}

void TcpConsole::accept_next() {
  auto socket = std::make_shared<tcp::socket>(io_);
  acceptor_.async_accept(*socket, [this, socket](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;  // closed
    if (ec) {
      const auto pause = accept_backoff_.next();
      spdlog::warn("console: accept failed: {} (next try in {} ms)", ec.message(), pause.count());
      accept_pause_.expires_after(pause);
      accept_pause_.async_wait([this](const boost::system::error_code& wait_ec) {
        if (!wait_ec) accept_next();
      });
      return;
    }
    accept_backoff_.reset();
    boost::system::error_code ignored;
    socket->set_option(tcp::no_delay(true), ignored);
    if (client_) client_->close(ignored);  // a new client replaces the old one
    client_ = socket;
    in_flight_.clear();
    writing_ = false;
    {
      std::lock_guard lock(mutex_);
      ++clients_accepted_;
      io_writing_ = false;
      set_direct_client_locked(socket->native_handle());
    }
    spdlog::debug("console: client connected");
    read_more(socket);
    send_pending();
    accept_next();
  });
}

void TcpConsole::read_more(std::shared_ptr<tcp::socket> socket) {
  socket->async_read_some(asio::buffer(read_buffer_),
                          [this, socket](const boost::system::error_code& ec, size_t n) {
                            if (ec) {
                              if (client_ == socket) {
                                client_.reset();
                                std::lock_guard lock(mutex_);
                                set_direct_client_locked(-1);
                              }
                              return;
                            }
                            bool full = false;
                            {
                              std::lock_guard lock(mutex_);
                              input_.insert(input_.end(), read_buffer_.begin(),
                                            read_buffer_.begin() + n);
                              full = input_full_ = input_.size() >= max_pending_input_;
                            }
                            input_ready_.notify_all();
                            if (full) paused_ = socket;  // resumed by read_input
                            else read_more(socket);
                          });
}

void TcpConsole::send_pending() {
  if (writing_ || !client_) return;
  {
    std::lock_guard lock(mutex_);
    if (pending_output_.empty()) {
      io_writing_ = false;
      return;
    }
    in_flight_.swap(pending_output_);
    pending_output_.clear();
    io_writing_ = true;
  }
  writing_ = true;
  auto socket = client_;
  asio::async_write(*socket, asio::buffer(in_flight_),
                    [this, socket](const boost::system::error_code& ec, size_t) {
                      writing_ = false;
                      if (ec) {
                        if (client_ == socket) {
                          client_.reset();
                          std::lock_guard lock(mutex_);
                          io_writing_ = false;
                          set_direct_client_locked(-1);
                        }
                        return;
                      }
                      in_flight_.clear();
                      send_pending();
                    });
}

size_t TcpConsole::read_input(std::vector<uint8_t>& out, size_t max) {
  std::lock_guard lock(mutex_);
  const size_t n = std::min(max, input_.size());
  out.insert(out.end(), input_.begin(), input_.begin() + n);
  input_.erase(input_.begin(), input_.begin() + n);
  if (input_full_ && input_.size() <= max_pending_input_ / 2) {
    input_full_ = false;
    asio::post(io_, [this] {
      auto socket = paused_.lock();
      paused_.reset();
      if (socket && socket == client_) read_more(socket);  // a replaced client stays closed
    });
  }
  return n;
}

bool TcpConsole::wait_input(std::chrono::nanoseconds timeout) {
  std::unique_lock lock(mutex_);
  return input_ready_.wait_for(lock, timeout, [this] { return !input_.empty(); });
}

void TcpConsole::write_output(std::span<const uint8_t> bytes) {
  {
    std::lock_guard lock(mutex_);
    if (direct_fd_ >= 0 && pending_output_.empty() && !io_writing_) {
      // Nothing ahead of these bytes: write them from this thread. Whatever the socket does
      // not take now (or all of it, on an error the I/O thread will then report) is queued.
      const ssize_t n = ::send(direct_fd_, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) bytes = bytes.subspan(static_cast<size_t>(n));
      if (bytes.empty()) return;
    }
    // A console nobody reads must not grow without bound: keep the newest bytes.
    pending_output_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (pending_output_.size() > max_pending_output_) {
      pending_output_.erase(0, pending_output_.size() - max_pending_output_);
    }
  }
  if (!send_scheduled_.exchange(true)) {
    asio::post(io_, [this] {
      send_scheduled_ = false;
      send_pending();
    });
  }
}

}  // namespace tandem::console
