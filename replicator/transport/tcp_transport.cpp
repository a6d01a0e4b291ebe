// The TCP replication transport (Boost.Asio, one I/O thread per Transport): the listener that
// accepts links, the connector that opens them, and make_tcp_transport(). The links
// themselves are in tcp_link.h, their handshake in handshake.h.
// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "replicator/transport/link.h"
#include "replicator/transport/tcp_link.h"

namespace tandem::replicator {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class TcpTransport final : public Transport {
 public:
  TcpTransport(const LinkIdentity& me, TransportOptions options)
      : core_(std::make_shared<TcpCore>(me, options)), acceptor_(core_->io), retry_timer_(core_->io) {
    work_.emplace(core_->io.get_executor());
    // The thread holds the core too, so a transport destroyed from its own callback (which
    // it must not be) still leaves the io_context alive until run() returns.
    thread_ = std::thread([core = core_] {
      while (true) {
        try {
          core->io.run();
          return;
        } catch (const std::exception& e) {
          spdlog::error("link: I/O thread caught: {}", e.what());
        }
      }
    });
  }

  ~TcpTransport() override { stop(); }

  void listen(const std::string& host, uint16_t port, std::function<void(std::shared_ptr<Link>)> on_link) override {
    if (stopped_) throw std::logic_error("link: listen on a stopped transport");
    if (listening_.exchange(true)) throw std::logic_error("link: the transport is already listening");
    tcp::endpoint endpoint;
    boost::system::error_code ec;
    // The acceptor is not used by the I/O thread before the post below.
    auto address = asio::ip::make_address(host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, port);
      acceptor_.open(endpoint.protocol(), ec);
      if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
      if (!ec) acceptor_.bind(endpoint, ec);
      if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    }
    if (ec) {
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      listening_ = false;  // the caller may retry elsewhere
      throw std::system_error(std::error_code(ec.value(), std::system_category()),
                              "link: cannot listen on " + host + ":" + std::to_string(port));
    }
    port_ = acceptor_.local_endpoint().port();
    on_link_ = std::move(on_link);
    spdlog::info("link: listening on {}", endpoint_text(acceptor_.local_endpoint()));
    asio::post(core_->io, [this] { accept_next(); });
  }

  uint16_t bound_port() const override { return port_.load(); }

  void connect(const std::string& host, uint16_t port,
               std::function<void(std::shared_ptr<Link>, std::string error)> done) override {
    if (stopped_) {
      done(nullptr, "transport stopped");
      return;
    }
    asio::post(core_->io, [this, host, port, done = std::move(done)]() mutable {
      if (core_->stopped) return done(nullptr, "transport stopped");
      auto link = std::make_shared<TcpLink>(core_, tcp::socket(core_->io), Handshake::Side::kInitiator, std::move(done));
      track(link);
      begin_connect(link, host, port);
    });
  }

  TransportStats stats() const override {
    std::lock_guard lock(core_->stats_mutex);
    return core_->stats;
  }

  void stop() override {
    if (stopped_.exchange(true)) return;
    auto shut_down = [core = core_, this] {
      core->stopped = true;
      boost::system::error_code ignored;
      acceptor_.close(ignored);
      retry_timer_.cancel();
      for (auto& weak : core->links) {
        if (auto link = weak.lock()) link->terminate("transport stopped");
      }
      core->links.clear();
    };
    if (core_->io.get_executor().running_in_this_thread()) {
      spdlog::error("link: Transport::stop() called from a transport callback; the I/O thread is left to finish");
      shut_down();
      work_.reset();
      if (thread_.joinable()) thread_.detach();
      return;
    }
    asio::post(core_->io, shut_down);
    work_.reset();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void track(const std::shared_ptr<TcpLink>& link) {
    auto& links = core_->links;
    std::erase_if(links, [](const std::weak_ptr<TcpLink>& weak) { return weak.expired(); });
    links.push_back(link);
  }

  // The connector: resolves and connects under the link's handshake timeout, then the link
  // runs the initiator's side of the handshake.
  void begin_connect(const std::shared_ptr<TcpLink>& link, const std::string& host, uint16_t port) {
    link->begin_connecting(host + ":" + std::to_string(port));
    auto resolver = std::make_shared<tcp::resolver>(core_->io);
    resolver->async_resolve(
        host, std::to_string(port),
        [link, resolver](const boost::system::error_code& ec, tcp::resolver::results_type results) {
          if (!link->connecting()) return;
          if (ec) return link->terminate("cannot resolve " + link->peer().address + ": " + ec.message());
          asio::async_connect(link->socket(), results,
                              [link](const boost::system::error_code& ec2, const tcp::endpoint& endpoint) {
                                if (!link->connecting()) return;
                                if (ec2) {
                                  return link->terminate("cannot connect to " + link->peer().address + ": " +
                                                         ec2.message());
                                }
                                link->connected(endpoint);
                              });
        });
  }

  // The acceptor: every accepted socket becomes a link running the acceptor's side of the
  // handshake, up to max_pending_handshakes at a time.
  void accept_next() {
    if (core_->stopped) return;
    acceptor_.async_accept([this](const boost::system::error_code& ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || core_->stopped) return;
      if (ec) {
        // E.g. out of file descriptors: keep the listener alive and try again shortly.
        const auto pause = retry_backoff_.next();
        spdlog::warn("link: accept failed: {} (next try in {} ms)", ec.message(), pause.count());
        retry_timer_.expires_after(pause);
        retry_timer_.async_wait([this](const boost::system::error_code& wait_ec) {
          if (!wait_ec) accept_next();
        });
        return;
      }
      retry_backoff_.reset();
      boost::system::error_code remote_ec;
      const auto remote = socket.remote_endpoint(remote_ec);
      std::string reason = remote_ec ? remote_ec.message() : "";
      auto slot = remote_ec ? std::nullopt : core_->admission.admit(remote.address(), reason);
      if (!slot) {
        core_->count_refusal(reason);
        spdlog::warn("link: refusing {}: {}", endpoint_text(remote), reason);
        socket.close(remote_ec);
      } else {
        auto on_link = on_link_;
        auto link = std::make_shared<TcpLink>(core_, std::move(socket), Handshake::Side::kAcceptor,
                                              [on_link](std::shared_ptr<Link> link, const std::string& error) {
                                                if (link && error.empty() && on_link) on_link(std::move(link));
                                              });
        track(link);
        link->begin_accepted(std::move(*slot));
      }
      accept_next();
    });
  }

  std::shared_ptr<TcpCore> core_;  // first: outlives the acceptor and timer
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  net::AcceptBackoff retry_backoff_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
  std::function<void(std::shared_ptr<Link>)> on_link_;
  std::atomic<uint16_t> port_{0};
  std::atomic<bool> listening_{false};
  std::atomic<bool> stopped_{false};
};

}  // namespace

std::unique_ptr<Transport> make_tcp_transport(const LinkIdentity& me, TransportOptions options) {
  if (me.vm_id.empty()) throw std::invalid_argument("link: the identity has no vm_id");
  if (me.vm_id.size() > kMaxNameBytes) throw std::invalid_argument("link: vm_id is longer than 256 bytes");
  if (me.node_name.size() > kMaxNameBytes) throw std::invalid_argument("link: node_name is longer than 256 bytes");
  if (me.psk.size() < kMinPskBytes) {
    throw std::invalid_argument("link: the pre-shared key has " + std::to_string(me.psk.size()) +
                                " bytes; at least " + std::to_string(kMinPskBytes) + " are required");
  }
  if (options.handshake_timeout.count() <= 0) throw std::invalid_argument("link: handshake_timeout must be positive");
  return std::make_unique<TcpTransport>(me, options);
}

}  // namespace tandem::replicator
