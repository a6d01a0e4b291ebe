// tandemd's control socket: a Unix stream socket (mode 0600) speaking JSON lines. Each
// request is one JSON object on one line and gets one JSON object back on one line:
//   {"cmd":"status"}                    → {"ok":true,"status":{...}}   (see status_to_json)
//   {"cmd":"protect","peer":"H:P"}      → {"ok":true} | {"ok":false,"error":"..."}
//   {"cmd":"unprotect"}                 → same
//   {"cmd":"failover"}                  → same
// A line that is not a valid request gets an error reply and the connection stays open; a
// line longer than kMaxControlLine gets an error reply and the connection is closed; a
// client that disconnects mid-request is dropped. None of this disturbs the node.
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "replicator/node.h"

namespace tandem::replicator {

inline constexpr size_t kMaxControlLine = 64 * 1024;

// What the control server drives. tandemd adapts a Node (NodeControl); tests use fakes.
// Calls arrive on the server's thread, one at a time.
class ControlHandler {
 public:
  virtual ~ControlHandler() = default;
  virtual NodeStatus status() = 0;
  // Each returns "" when the operation was accepted (started), else the reason it was refused.
  virtual std::string protect(const std::string& peer) = 0;
  virtual std::string unprotect() = 0;
  virtual std::string failover() = 0;
};

class NodeControl final : public ControlHandler {
 public:
  explicit NodeControl(Node& node) : node_(node) {}
  NodeStatus status() override { return node_.status(); }
  std::string protect(const std::string& peer) override { return node_.protect(peer); }
  std::string unprotect() override { return node_.unprotect(); }
  std::string failover() override { return node_.failover(); }

 private:
  Node& node_;
};

class ControlServer {
 public:
  // Binds `socket_path` (creating its directory if missing; replacing a stale socket file,
  // refusing if another process still serves it or the path is not a socket) and serves it
  // on its own thread. Throws std::runtime_error naming the path on failure.
  ControlServer(std::string socket_path, ControlHandler& handler);
  ~ControlServer();  // stop()
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Closes every connection, joins the thread and removes the socket file (if it is still
  // the one this server created). Idempotent.
  void stop();
  const std::string& path() const { return path_; }

  // The reply to one request (exposed for tests).
  static nlohmann::json handle(ControlHandler& handler, const nlohmann::json& request);

  struct State;  // defined in control.cpp

 private:
  std::string path_;
  std::shared_ptr<State> state_;
};

// The control socket could not be reached (no daemon, wrong path, permissions).
class ControlUnavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Sends one request and returns the reply. Throws ControlUnavailable if the socket cannot be
// reached, std::runtime_error if the reply is missing, late or not JSON.
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The status object of a "status" reply, and back (tolerant of missing fields, throws
// std::runtime_error for fields of the wrong type or unknown role/state names).
nlohmann::json status_to_json(const NodeStatus& status);
NodeStatus status_from_json(const nlohmann::json& json);

// The operator's view, as `tandemctl status` prints it:
//   node a  role primary  state PROTECTED  epoch 3
//   icount 123456789  peer icount 123450000  lag 6789 instr (0.007 ms)
//   log 12.3 KB/s (total 1.2 MB)  last audit @120000000 ok
//   sync: done, 3 rounds, 4.1 MB at 210.3 MB/s
//   console 127.0.0.1:7300  peer 127.0.0.1:7200
// plus "error: ..." when the node reports one. Sizes are decimal (1 MB = 10^6 bytes).
std::string format_status(const NodeStatus& status);

}  // namespace tandem::replicator
