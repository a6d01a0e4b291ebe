#include "replicator/control.h"

#include <sys/stat.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "replicator/config.h"

namespace tandem::replicator {

namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using boost::system::error_code;
using nlohmann::json;

namespace {

// A client that says nothing for this long is disconnected, so idle connections cannot
// pile up; a request in flight is not affected (the handler runs between reads).
constexpr auto kIdleTimeout = std::chrono::seconds(60);
constexpr size_t kMaxClients = 32;

std::string string_field(const json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end()) throw std::invalid_argument(fmt::format("missing \"{}\"", key));
  if (!it->is_string()) throw std::invalid_argument(fmt::format("\"{}\" must be a string", key));
  return it->get<std::string>();
}

json result(const std::string& refusal) {
  if (refusal.empty()) return {{"ok", true}};
  return {{"ok", false}, {"error", refusal}};
}

json error_reply(const std::string& error) { return {{"ok", false}, {"error", error}}; }

}  // namespace

json ControlServer::handle(ControlHandler& handler, const json& request) {
  try {
    if (!request.is_object()) return error_reply("a request is a JSON object such as {\"cmd\":\"status\"}");
    const std::string cmd = string_field(request, "cmd");
    if (cmd == "status") return {{"ok", true}, {"status", status_to_json(handler.status())}};
    if (cmd == "protect") {
      const std::string peer = string_field(request, "peer");
      parse_endpoint(peer);  // refuse a bad address here, with the reason, before the node sees it
      return result(handler.protect(peer));
    }
    if (cmd == "unprotect") return result(handler.unprotect());
    if (cmd == "failover") return result(handler.failover());
    return error_reply(fmt::format("unknown command \"{}\" (known: status, protect, unprotect, failover)", cmd));
  } catch (const std::invalid_argument& e) {
    return error_reply(e.what());
  } catch (const std::exception& e) {
    // A handler that throws is a bug in the node, not the client's fault; still answer.
    spdlog::error("control: request {} failed: {}", request.dump(), e.what());
    return error_reply(fmt::format("internal error: {}", e.what()));
  }
}

// ---------------------------------------------------------------------------------------
// Server

struct ControlServer::State : std::enable_shared_from_this<ControlServer::State> {
  struct Session : std::enable_shared_from_this<Session> {
    Session(std::shared_ptr<State> state, local::socket socket)
        : state(std::move(state)), socket(std::move(socket)), idle(this->socket.get_executor()),
          input(kMaxControlLine + 1) {}

    void start() { read_next(); }

    void read_next() {
      idle.expires_after(kIdleTimeout);
      idle.async_wait([self = shared_from_this()](error_code ec) {
        if (!ec) self->close();
      });
      asio::async_read_until(socket, input, '\n', [self = shared_from_this()](error_code ec, size_t length) {
        self->idle.cancel();
        self->on_line(ec, length);
      });
    }

    void on_line(error_code ec, size_t length) {
      if (ec == asio::error::not_found) {
        // The line outgrew the buffer: answer once, then hang up (the rest of it is unread).
        send(error_reply(fmt::format("request line longer than {} bytes", kMaxControlLine)), /*then_close=*/true);
        return;
      }
      if (ec) {  // EOF (possibly mid-line), reset or close(): nothing to answer
        close();
        return;
      }
      std::string line(asio::buffers_begin(input.data()), asio::buffers_begin(input.data()) + length - 1);
      input.consume(length);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      json reply;
      try {
        reply = ControlServer::handle(state->handler, json::parse(line));
      } catch (const json::parse_error&) {
        reply = error_reply("not a JSON request line");
      }
      send(reply, /*then_close=*/false);
    }

    void send(const json& reply, bool then_close) {
      output = reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
      asio::async_write(socket, asio::buffer(output), [self = shared_from_this(), then_close](error_code ec, size_t) {
        if (ec || then_close) {
          self->close();
          return;
        }
        self->read_next();
      });
    }

    void close() {
      error_code ignored;
      socket.shutdown(local::socket::shutdown_both, ignored);
      socket.close(ignored);
      idle.cancel();
      state->sessions.erase(shared_from_this());
    }

    std::shared_ptr<State> state;
    local::socket socket;
    asio::steady_timer idle;
    asio::streambuf input;
    std::string output;
  };

  explicit State(ControlHandler& handler) : handler(handler), acceptor(io) {}

  void accept_next() {
    acceptor.async_accept([self = shared_from_this()](error_code ec, local::socket socket) {
      if (ec == asio::error::operation_aborted || !self->acceptor.is_open()) return;
      if (!ec) {
        if (self->sessions.size() >= kMaxClients) {
          // Refuse politely rather than let a flood of clients exhaust descriptors.
          error_code ignored;
          const std::string busy = error_reply("too many control clients").dump() + "\n";
          socket.non_blocking(true, ignored);
          socket.write_some(asio::buffer(busy), ignored);
          socket.close(ignored);
        } else {
          auto session = std::make_shared<Session>(self, std::move(socket));
          self->sessions.insert(session);
          session->start();
        }
      } else {
        spdlog::warn("control: accept failed: {}", ec.message());
      }
      self->accept_next();
    });
  }

  ControlHandler& handler;
  asio::io_context io;
  local::acceptor acceptor;
  std::set<std::shared_ptr<Session>> sessions;  // touched only on the I/O thread
  std::thread thread;
  ino_t socket_inode = 0;
  std::once_flag stopped;
};

namespace {

// Removes a socket file left by a daemon that died; refuses to touch a live one or a file
// that is not a socket.
void clear_stale_socket(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISSOCK(st.st_mode))
    throw std::runtime_error(fmt::format("control socket {}: the path exists and is not a socket", path));
  asio::io_context io;
  local::socket probe(io);
  error_code ec;
  probe.connect(local::endpoint(path), ec);
  if (!ec) throw std::runtime_error(fmt::format("control socket {}: another process is serving it", path));
  std::error_code remove_ec;
  std::filesystem::remove(path, remove_ec);
  if (remove_ec)
    throw std::runtime_error(fmt::format("control socket {}: cannot remove the stale socket: {}", path, remove_ec.message()));
  spdlog::info("control: replaced stale socket {}", path);
}

}  // namespace

ControlServer::ControlServer(std::string socket_path, ControlHandler& handler)
    : path_(std::move(socket_path)), state_(std::make_shared<State>(handler)) {
  namespace fs = std::filesystem;
  if (path_.empty() || path_.size() > 107)
    throw std::runtime_error(fmt::format("control socket \"{}\": the path must be 1-107 bytes", path_));
  const fs::path parent = fs::path(path_).parent_path();
  std::error_code fs_ec;
  if (!parent.empty() && !fs::exists(parent, fs_ec)) {
    fs::create_directories(parent, fs_ec);
    if (fs_ec) throw std::runtime_error(fmt::format("control socket {}: cannot create {}: {}", path_, parent.string(), fs_ec.message()));
  }
  clear_stale_socket(path_);

  error_code ec;
  auto& acceptor = state_->acceptor;
  acceptor.open(local(), ec);
  if (!ec) acceptor.bind(local::endpoint(path_), ec);
  if (ec) throw std::runtime_error(fmt::format("control socket {}: cannot bind: {}", path_, ec.message()));
  // Nothing can connect before listen(), so tightening the mode here leaves no window in
  // which another user could reach the socket.
  if (::chmod(path_.c_str(), 0600) != 0) {
    const std::string why = std::strerror(errno);
    std::filesystem::remove(path_, fs_ec);
    throw std::runtime_error(fmt::format("control socket {}: cannot chmod 0600: {}", path_, why));
  }
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) state_->socket_inode = st.st_ino;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    std::filesystem::remove(path_, fs_ec);
    throw std::runtime_error(fmt::format("control socket {}: cannot listen: {}", path_, ec.message()));
  }
  state_->accept_next();
  state_->thread = std::thread([state = state_] { state->io.run(); });
  spdlog::info("control: listening on {}", path_);
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  std::call_once(state_->stopped, [this] {
    asio::post(state_->io, [state = state_] {
      error_code ignored;
      state->acceptor.close(ignored);
      auto sessions = state->sessions;  // close() erases from the set
      for (auto& session : sessions) session->close();
    });
    // With the acceptor, sockets and timers closed every pending handler completes, so
    // run() returns by itself and no handler (holding a session) is left behind.
    if (state_->thread.joinable()) state_->thread.join();
    // Remove the socket file only if it is still ours (a newer daemon may have replaced it).
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == state_->socket_inode) ::unlink(path_.c_str());
  });
}

// ---------------------------------------------------------------------------------------
// Client

json control_request(const std::string& socket_path, const json& request, std::chrono::milliseconds timeout) {
  asio::io_context io;
  local::socket socket(io);
  error_code ec;
  socket.connect(local::endpoint(socket_path), ec);
  if (ec) {
    const bool nobody_there = ec == boost::system::errc::no_such_file_or_directory ||
                              ec == boost::system::errc::connection_refused;
    const std::string hint = nobody_there ? " (is tandemd running?)" : "";
    throw ControlUnavailable(fmt::format("cannot connect to control socket {}: {}{}", socket_path, ec.message(), hint));
  }
  const std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  asio::streambuf input(kMaxControlLine * 16);  // a status reply is small; this only bounds a rogue server
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
  try {
    json parsed = json::parse(reply);
    if (!parsed.is_object() || !parsed.contains("ok") || !parsed["ok"].is_boolean())
      throw std::runtime_error("no \"ok\" field");
    return parsed;
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("control socket {}: malformed reply: {}", socket_path, e.what()));
  }
}

// ---------------------------------------------------------------------------------------
// Status as JSON and text

namespace {

std::optional<Role> role_named(const std::string& name) {
  for (Role r : {Role::Primary, Role::Secondary})
    if (name == to_string(r)) return r;
  return std::nullopt;
}

std::optional<PairState> state_named(const std::string& name) {
  for (PairState s : {PairState::Standalone, PairState::Syncing, PairState::Protected, PairState::Standby,
                      PairState::Failed, PairState::Fenced})
    if (name == to_string(s)) return s;
  return std::nullopt;
}

template <typename T>
void take(const json& object, const char* key, T& out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    throw std::runtime_error(fmt::format("status field \"{}\" has the wrong type", key));
  }
}

std::string human_bytes(uint64_t bytes) {
  if (bytes < 1000) return fmt::format("{} B", bytes);
  if (bytes < 1000'000) return fmt::format("{:.1f} KB", bytes / 1e3);
  if (bytes < 1000'000'000) return fmt::format("{:.1f} MB", bytes / 1e6);
  return fmt::format("{:.1f} GB", bytes / 1e9);
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

json status_to_json(const NodeStatus& s) {
  return {
      {"node", s.node_name},
      {"vm_id", s.vm_id},
      {"role", to_string(s.role)},
      {"state", to_string(s.state)},
      {"epoch", s.epoch},
      {"icount", s.icount},
      {"peer_icount", s.peer_icount},
      {"lag_instructions", s.lag_instructions},
      {"lag_ms", s.lag_ms},
      {"log_rate_kb_s", s.log_rate_kb_s},
      {"log_bytes", s.log_bytes},
      {"last_audit_icount", s.last_audit_icount},
      {"last_audit_ok", s.last_audit_ok},
      {"sync",
       {{"rounds", s.sync.rounds}, {"bytes", s.sync.bytes}, {"rate_mb_s", s.sync.rate_mb_s}, {"done", s.sync.done}}},
      {"peer", s.peer},
      {"console", s.console},
      {"last_error", s.last_error},
      {"pid", s.pid},
      {"fencing",
       {{"arbiter", s.fencing.arbiter},
        {"lease_ms_left", s.fencing.lease_ms_left},
        {"fenced", s.fencing.fenced},
        {"ack_ms_left", s.fencing.ack_ms_left},
        {"link", s.fencing.link},
        {"heartbeat_path", s.fencing.heartbeat_path},
        {"degraded", s.fencing.degraded},
        {"lease", s.fencing.lease},
        {"promotion", s.fencing.promotion}}},
  };
}

NodeStatus status_from_json(const json& j) {
  if (!j.is_object()) throw std::runtime_error("the status is not a JSON object");
  NodeStatus s;
  take(j, "node", s.node_name);
  take(j, "vm_id", s.vm_id);
  std::string role = to_string(s.role), state = to_string(s.state);
  take(j, "role", role);
  take(j, "state", state);
  if (auto r = role_named(role)) s.role = *r;
  else throw std::runtime_error(fmt::format("unknown role \"{}\"", role));
  if (auto st = state_named(state)) s.state = *st;
  else throw std::runtime_error(fmt::format("unknown state \"{}\"", state));
  take(j, "epoch", s.epoch);
  take(j, "icount", s.icount);
  take(j, "peer_icount", s.peer_icount);
  take(j, "lag_instructions", s.lag_instructions);
  take(j, "lag_ms", s.lag_ms);
  take(j, "log_rate_kb_s", s.log_rate_kb_s);
  take(j, "log_bytes", s.log_bytes);
  take(j, "last_audit_icount", s.last_audit_icount);
  take(j, "last_audit_ok", s.last_audit_ok);
  if (auto it = j.find("sync"); it != j.end() && it->is_object()) {
    take(*it, "rounds", s.sync.rounds);
    take(*it, "bytes", s.sync.bytes);
    take(*it, "rate_mb_s", s.sync.rate_mb_s);
    take(*it, "done", s.sync.done);
  }
  take(j, "peer", s.peer);
  take(j, "console", s.console);
  take(j, "last_error", s.last_error);
  take(j, "pid", s.pid);
  if (auto it = j.find("fencing"); it != j.end() && it->is_object()) {
    take(*it, "arbiter", s.fencing.arbiter);
    take(*it, "lease_ms_left", s.fencing.lease_ms_left);
    take(*it, "fenced", s.fencing.fenced);
    take(*it, "ack_ms_left", s.fencing.ack_ms_left);
    take(*it, "link", s.fencing.link);
    take(*it, "heartbeat_path", s.fencing.heartbeat_path);
    take(*it, "degraded", s.fencing.degraded);
    take(*it, "lease", s.fencing.lease);
    take(*it, "promotion", s.fencing.promotion);
  }
  return s;
}

std::string format_status(const NodeStatus& s) {
  std::string out = fmt::format("node {}  role {}  state {}  epoch {}\n", or_dash(s.node_name), to_string(s.role),
                                to_string(s.state), s.epoch);
  out += fmt::format("icount {}  peer icount {}  lag {} instr ({:.3f} ms)\n", s.icount, s.peer_icount,
                     s.lag_instructions, s.lag_ms);
  const std::string audit = s.last_audit_icount == 0
                                ? "none"
                                : fmt::format("@{} {}", s.last_audit_icount, s.last_audit_ok ? "ok" : "MISMATCH");
  out += fmt::format("log {:.1f} KB/s (total {})  last audit {}\n", s.log_rate_kb_s, human_bytes(s.log_bytes), audit);
  if (s.sync.done) {
    out += fmt::format("sync: done, {} rounds, {} at {:.1f} MB/s\n", s.sync.rounds, human_bytes(s.sync.bytes),
                       s.sync.rate_mb_s);
  } else if (s.sync.rounds > 0 || s.sync.bytes > 0) {
    out += fmt::format("sync: in progress, round {}, {} at {:.1f} MB/s\n", s.sync.rounds, human_bytes(s.sync.bytes),
                       s.sync.rate_mb_s);
  } else {
    out += "sync: none\n";
  }
  out += fmt::format("console {}  peer {}\n", or_dash(s.console), or_dash(s.peer));
  if (!s.fencing.arbiter.empty()) {
    std::string lease = s.fencing.lease_ms_left < 0 ? "no lease" : fmt::format("lease {} ms left", s.fencing.lease_ms_left);
    if (s.fencing.ack_ms_left >= 0) lease += fmt::format(", acks {} ms", s.fencing.ack_ms_left);
    out += fmt::format("fencing: {}  {}{}  link {}  heartbeat path {}{}\n", s.fencing.arbiter, lease,
                       s.fencing.fenced ? "  FENCED (no output)" : "", s.fencing.link, s.fencing.heartbeat_path,
                       s.fencing.degraded ? "  DEGRADED" : "");
    if (!s.fencing.promotion.empty()) out += fmt::format("promotion: {}\n", s.fencing.promotion);
  }
  if (!s.last_error.empty()) out += fmt::format("error: {}\n", s.last_error);
  return out;
}

}  // namespace tandem::replicator
