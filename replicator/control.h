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

#include <string>

#include <nlohmann/json.hpp>

#include "control/client.h"
#include "control/status.h"
#include "net/json_lines.h"
#include "replicator/node.h"

namespace tandem::replicator {

inline constexpr size_t kMaxControlLine = net::kMaxJsonLine;

// What the control server drives. tandemd adapts a Node (NodeControl); tests use fakes.
// Calls arrive on the server's thread, one at a time.
class ControlHandler {
 public:
  virtual ~ControlHandler() = default;
  virtual NodeStatus status() = 0;
  // Each succeeds when the operation was accepted (started); else why it was refused.
  virtual Result<void> protect(const std::string& peer) = 0;
  virtual Result<void> unprotect() = 0;
  virtual Result<void> failover() = 0;
};

class NodeControl final : public ControlHandler {
 public:
  explicit NodeControl(Node& node) : node_(node) {}
  NodeStatus status() override { return node_.status(); }
  Result<void> protect(const std::string& peer) override { return node_.protect(peer); }
  Result<void> unprotect() override { return node_.unprotect(); }
  Result<void> failover() override { return node_.failover(); }

 private:
  Node& node_;
};

class ControlServer {
 public:
  // Binds `socket_path` (creating its directory if missing; replacing a stale socket file,
  // refusing if another process still serves it or the path is not a socket) and serves it
  // on its own thread (net::JsonLinesServer). Throws std::runtime_error naming the path.
  ControlServer(std::string socket_path, ControlHandler& handler);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Closes every connection, joins the thread and removes the socket file (if it is still
  // the one this server created). Idempotent; also done by the destructor.
  void stop() { server_.stop(); }
  const std::string& path() const { return server_.path(); }

  // The reply to one request (exposed for tests).
  static nlohmann::json handle(ControlHandler& handler, const nlohmann::json& request);

 private:
  net::JsonLinesServer server_;
};

// The client and the status schema: control/client.h and control/status.h (tandemctl and
// the drills use them without linking the node); format_status is tandemctl's.
using control::control_request;
using control::ControlUnavailable;
using control::status_from_json;
using control::status_to_json;

}  // namespace tandem::replicator
