#include "net/json_lines.h"

#include <sys/stat.h>
#include <unistd.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace tandem::net {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using boost::system::error_code;
using nlohmann::json;

json error_reply(const std::string& error) { return {{"ok", false}, {"error", error}}; }

namespace {

std::string dump_line(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace) + "\n"; }

// Removes a socket file left by a process that died; refuses to touch a live one or a file
// that is not a socket.
void clear_stale_socket(const std::string& what, const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode)) throw std::runtime_error(fmt::format("{} {}: the path exists and is not a socket", what, path));
  asio::io_context io;
  local::socket probe(io);
  error_code ec;
  probe.connect(local::endpoint(path), ec);
  if (!ec) throw std::runtime_error(fmt::format("{} {}: another process is serving it", what, path));
  std::error_code remove_ec;
  std::filesystem::remove(path, remove_ec);
  if (remove_ec)
    throw std::runtime_error(fmt::format("{} {}: cannot remove the stale socket: {}", what, path, remove_ec.message()));
  spdlog::info("{}: replaced stale socket {}", what, path);
}

}  // namespace

struct JsonLinesServer::State : std::enable_shared_from_this<JsonLinesServer::State> {
  State(asio::io_context& io, JsonLinesHandler handler, JsonLinesOptions options)
      : io(io), handler(std::move(handler)), options(std::move(options)), acceptor(io) {}

  std::string what() const { return options.name + " socket"; }

  json answer(const std::string& line) {
    const json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded()) return error_reply("not valid JSON: a request is one JSON object on one line");
    try {
      return handler(request);
    } catch (const std::exception& e) {
      // A handler that throws is a bug in the server, not the client's fault; still answer.
      spdlog::error("{}: request {} failed: {}", options.name, request.dump(), e.what());
      return error_reply(fmt::format("internal error: {}", e.what()));
    }
  }

  asio::awaitable<void> serve(std::shared_ptr<local::socket> socket) {
    auto self = shared_from_this();
    asio::streambuf input(options.max_line + 1);
    asio::steady_timer idle(io);
    error_code ec;
    for (;;) {
      if (options.idle_timeout.count() > 0) {
        idle.expires_after(options.idle_timeout);
        idle.async_wait([weak = std::weak_ptr<local::socket>(socket)](error_code timer_ec) {
          if (timer_ec) return;
          if (auto s = weak.lock()) {
            error_code ignored;
            s->close(ignored);
          }
        });
      }
      const size_t length =
          co_await asio::async_read_until(*socket, input, '\n', asio::redirect_error(asio::use_awaitable, ec));
      idle.cancel();
      if (ec == asio::error::not_found) {
        // The line outgrew the buffer: answer once, then hang up (the rest of it is unread).
        const std::string reply =
            dump_line(error_reply(fmt::format("request line longer than {} bytes", options.max_line)));
        co_await asio::async_write(*socket, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
        break;
      }
      if (ec) break;  // EOF (possibly mid-line), reset or close(): nothing to answer
      std::string line(asio::buffers_begin(input.data()), asio::buffers_begin(input.data()) + length - 1);
      input.consume(length);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      const std::string reply = dump_line(answer(line));
      co_await asio::async_write(*socket, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
    }
    idle.cancel();
    error_code ignored;
    socket->shutdown(local::socket::shutdown_both, ignored);
    socket->close(ignored);
    sessions.erase(socket);
  }

  asio::awaitable<void> accept_loop() {
    auto self = shared_from_this();
    for (;;) {
      auto socket = std::make_shared<local::socket>(io);
      error_code ec;
      co_await acceptor.async_accept(*socket, asio::redirect_error(asio::use_awaitable, ec));
      if (stopped || !acceptor.is_open()) co_return;
      if (ec) {
        spdlog::warn("{}: accept failed: {}", options.name, ec.message());
        continue;
      }
      if (sessions.size() >= options.max_clients) {
        // Refuse politely rather than let a flood of clients exhaust descriptors.
        const std::string busy = dump_line(error_reply(fmt::format("too many {} clients", options.name)));
        socket->non_blocking(true, ec);
        socket->write_some(asio::buffer(busy), ec);
        socket->close(ec);
        continue;
      }
      sessions.insert(socket);
      asio::co_spawn(io, serve(socket), asio::detached);
    }
  }

  // On the I/O thread.
  void close_all() {
    stopped = true;
    error_code ignored;
    acceptor.close(ignored);
    for (auto& socket : std::set(sessions)) {
      socket->shutdown(local::socket::shutdown_both, ignored);
      socket->close(ignored);
    }
  }

  asio::io_context& io;
  JsonLinesHandler handler;
  JsonLinesOptions options;
  local::acceptor acceptor;
  std::set<std::shared_ptr<local::socket>> sessions;  // I/O thread only
  bool stopped = false;                               // I/O thread only
  std::thread thread;
  ino_t socket_inode = 0;
  std::once_flag stop_once;
};

JsonLinesServer::JsonLinesServer(std::string socket_path, JsonLinesHandler handler, JsonLinesOptions options)
    : own_io_(std::make_unique<asio::io_context>()),
      path_(std::move(socket_path)),
      state_(std::make_shared<State>(*own_io_, std::move(handler), std::move(options))) {
  start();
}

JsonLinesServer::JsonLinesServer(asio::io_context& io, std::string socket_path, JsonLinesHandler handler,
                                 JsonLinesOptions options)
    : path_(std::move(socket_path)), state_(std::make_shared<State>(io, std::move(handler), std::move(options))) {
  start();
}

void JsonLinesServer::start() {
  namespace fs = std::filesystem;
  const std::string what = state_->what();
  if (path_.empty() || path_.size() > 107)
    throw std::runtime_error(fmt::format("{} \"{}\": the path must be 1-107 bytes", what, path_));
  const fs::path parent = fs::path(path_).parent_path();
  std::error_code fs_ec;
  if (!parent.empty() && !fs::exists(parent, fs_ec)) {
    fs::create_directories(parent, fs_ec);
    if (fs_ec) throw std::runtime_error(fmt::format("{} {}: cannot create {}: {}", what, path_, parent.string(), fs_ec.message()));
  }
  clear_stale_socket(what, path_);

  error_code ec;
  auto& acceptor = state_->acceptor;
  acceptor.open(local(), ec);
  if (!ec) acceptor.bind(local::endpoint(path_), ec);
  if (ec) throw std::runtime_error(fmt::format("{} {}: cannot bind: {}", what, path_, ec.message()));
  // Nothing can connect before listen(), so tightening the mode here leaves no window in
  // which another user could reach the socket.
  if (::chmod(path_.c_str(), 0600) != 0) {
    const std::string why = std::strerror(errno);
    fs::remove(path_, fs_ec);
    throw std::runtime_error(fmt::format("{} {}: cannot chmod 0600: {}", what, path_, why));
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) state_->socket_inode = st.st_ino;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    fs::remove(path_, fs_ec);
    throw std::runtime_error(fmt::format("{} {}: cannot listen: {}", what, path_, ec.message()));
  }
  asio::co_spawn(state_->io, state_->accept_loop(), asio::detached);
  if (own_io_) state_->thread = std::thread([io = own_io_.get()] { io->run(); });
  spdlog::info("{}: listening on {}", state_->options.name, path_);
}

JsonLinesServer::~JsonLinesServer() { stop(); }

void JsonLinesServer::stop() {
  std::call_once(state_->stop_once, [this] {
    if (own_io_) {
      asio::post(*own_io_, [state = state_] { state->close_all(); });
      // With the acceptor, sockets and timers closed every pending coroutine completes, so
      // run() returns by itself and no coroutine (holding the state) is left behind.
      if (state_->thread.joinable()) state_->thread.join();
    } else {
      state_->close_all();
    }
    // Remove the socket file only if it is still ours (a newer server may have replaced it).
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == state_->socket_inode) ::unlink(path_.c_str());
  });
}

json json_lines_request(const std::string& socket_path, const json& request, std::chrono::milliseconds timeout,
                        std::string_view hint, size_t max_reply) {
  asio::io_context io;
  local::socket socket(io);
  error_code ec;
  socket.connect(local::endpoint(socket_path), ec);
  if (ec) {
    const bool nobody_there =
        ec == boost::system::errc::no_such_file_or_directory || ec == boost::system::errc::connection_refused;
    throw Unreachable(fmt::format("cannot reach control socket {}: {}{}", socket_path, ec.message(),
                                  nobody_there ? hint : std::string_view()));
  }
  const std::string line = dump_line(request);
  asio::streambuf input(max_reply);
  std::optional<error_code> outcome;
  size_t reply_length = 0;
  asio::async_write(socket, asio::buffer(line), [&](error_code write_ec, size_t) {
    if (write_ec) {
      outcome = write_ec;
      return;
    }
    asio::async_read_until(socket, input, '\n', [&](error_code read_ec, size_t length) {
      outcome = read_ec;
      reply_length = length;
    });
  });
  io.run_for(timeout);
  if (!outcome)
    throw std::runtime_error(fmt::format("control socket {}: no reply within {} ms", socket_path, timeout.count()));
  if (*outcome)
    throw std::runtime_error(fmt::format("control socket {}: connection lost before the reply: {}", socket_path,
                                         outcome->message()));
  const std::string reply(asio::buffers_begin(input.data()), asio::buffers_begin(input.data()) + reply_length - 1);
  const json parsed = json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded())
    throw std::runtime_error(fmt::format("control socket {}: malformed reply: not JSON", socket_path));
  if (!parsed.is_object() || !parsed.contains("ok") || !parsed["ok"].is_boolean())
    throw std::runtime_error(fmt::format("control socket {}: malformed reply: no boolean \"ok\"", socket_path));
  return parsed;
}

}  // namespace tandem::net
