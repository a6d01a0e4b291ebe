// JSON lines over a Unix stream socket: the control protocol of tandemd and tandem-netsim.
// Each request is one JSON object on one line and gets one JSON object back on one line,
// {"ok":true,...} or {"ok":false,"error":"..."}.
//
// The server answers a line that is not JSON with an error and keeps the connection; a line
// longer than max_line gets an error and the connection is closed; a client that disconnects
// mid-line is dropped; one silent for idle_timeout is disconnected; more than max_clients at
// once are turned away with an error. None of this disturbs what the handler serves. The
// socket file is created mode 0600 (its directory too, if missing); a stale socket file left
// by a dead process is replaced, a live one or a path that is not a socket is refused.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

namespace tandem::net {

inline constexpr size_t kMaxJsonLine = 64 * 1024;

struct JsonLinesOptions {
  size_t max_line = kMaxJsonLine;                       // request bytes before the '\n'
  std::chrono::milliseconds idle_timeout{60'000};       // 0: never
  size_t max_clients = 32;
  std::string name = "control";                         // "control socket PATH: ..." in errors and logs
};

// The reply to one parsed request; runs on the server's I/O thread, one request at a time.
// An exception it throws is answered as {"ok":false,"error":"internal error: ..."}.
using JsonLinesHandler = std::function<nlohmann::json(const nlohmann::json& request)>;

class JsonLinesServer {
 public:
  // Serves `socket_path` on its own I/O thread. Throws std::runtime_error naming the path.
  JsonLinesServer(std::string socket_path, JsonLinesHandler handler, JsonLinesOptions options = {});
  // Serves on `io`, run by the caller: construct it and call stop() on that io's thread (or
  // while nothing runs it); the handler runs there.
  JsonLinesServer(boost::asio::io_context& io, std::string socket_path, JsonLinesHandler handler,
                  JsonLinesOptions options = {});
  ~JsonLinesServer();  // stop()
  JsonLinesServer(const JsonLinesServer&) = delete;
  JsonLinesServer& operator=(const JsonLinesServer&) = delete;

  // Closes every connection, joins the own thread (if any) and removes the socket file if it
  // is still the one this server created. Idempotent.
  void stop();
  const std::string& path() const { return path_; }

  struct State;  // json_lines.cpp

 private:
  void start();
  std::unique_ptr<boost::asio::io_context> own_io_;
  std::string path_;
  std::shared_ptr<State> state_;
};

// {"ok":false,"error":error}
nlohmann::json error_reply(const std::string& error);

// The socket could not be reached (nobody serves it, wrong path, permissions).
class Unreachable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sends one request and returns the reply. Throws Unreachable when the socket cannot be
// reached ("cannot reach control socket PATH: REASON" + `hint` when nobody serves it, e.g.
// " (is tandemd running?)"), std::runtime_error when the reply is late, cut short, longer
// than max_reply, not JSON or has no boolean "ok".
nlohmann::json json_lines_request(const std::string& socket_path, const nlohmann::json& request,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(10),
                                  std::string_view hint = "", size_t max_reply = 16 * kMaxJsonLine);

}  // namespace tandem::net
