#pragma once
// A console on a TCP socket (Boost.Asio, one I/O thread). One client at a time: a new
// client replaces the old one (the documented policy, docs/security.md: the console has no
// authentication of its own; bind it to 127.0.0.1 or a management network, where whoever can
// connect is the operator, and an operator who reconnects must never be locked out by a stale
// session). Input is bounded: past max_pending_input bytes the guest has not read, the console
// stops reading the socket (TCP pushes back on the client; nothing is dropped) and resumes
// when the guest has read half of it. An accept error (out of descriptors) is retried after a
// growing pause, never dropped for good nor spun on. Output produced while no client is connected is kept (up to
// a bound) and sent when one connects, so a client that connects late still sees the banner.
// Output goes straight to the client's socket from the writing thread (non-blocking) when
// nothing is waiting to be sent; only what the socket does not take at once waits for the
// I/O thread. A reply then costs no hand-off between threads.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio.hpp>

#include <atomic>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "net/admission.h"
#include "vmm-hooks/console_port.h"

namespace tandem::console {

class TcpConsole : public hooks::ConsolePort {
 public:
  // Listens on host:port (port 0 = any free port; see port()).
  TcpConsole(const std::string& host, uint16_t port, size_t max_pending_output = 1 << 20,
             size_t max_pending_input = 64 << 10);
  ~TcpConsole() override;

  uint16_t port() const { return port_; }
  // Number of clients accepted so far (for tests and status).
  uint64_t clients_accepted() const;
  // Input received and not yet read by the guest (at most max_pending_input + one read).
  size_t pending_input() const;

  size_t read_input(std::vector<uint8_t>& out, size_t max) override;
  bool wait_input(std::chrono::nanoseconds timeout) override;
  bool input_closed() const override { return false; }
  void write_output(std::span<const uint8_t> bytes) override;

 private:
  void accept_next();
  void read_more(std::shared_ptr<boost::asio::ip::tcp::socket> socket);
  void send_pending();  // on the I/O thread
  // Under mutex_: the descriptor direct writes use (a dup of the client's, so its number
  // is never reused under a writer), or -1.
  void set_direct_client_locked(int fd);

  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<boost::asio::ip::tcp::socket> client_;  // I/O thread only
  std::array<uint8_t, 4096> read_buffer_{};
  bool writing_ = false;                                  // I/O thread only
  std::string in_flight_;                                 // I/O thread only
  uint16_t port_ = 0;
  const size_t max_pending_output_;
  const size_t max_pending_input_;
  std::weak_ptr<boost::asio::ip::tcp::socket> paused_;  // I/O thread only: reading stopped (input full)
  boost::asio::steady_timer accept_pause_{io_};
  net::AcceptBackoff accept_backoff_;

  mutable std::mutex mutex_;
  std::condition_variable input_ready_;
  std::deque<uint8_t> input_;
  std::string pending_output_;
  bool input_full_ = false;  // reading paused until the guest has read half of max_pending_input
  bool io_writing_ = false;  // the I/O thread has output in flight (direct writes would reorder)
  int direct_fd_ = -1;
  uint64_t clients_accepted_ = 0;
  std::atomic<bool> send_scheduled_{false};  // coalesces posts from byte-wise output

  std::thread thread_;
};

}  // namespace tandem::console
