// The control socket: a Unix stream socket speaking JSON lines. Each request is one JSON
// object on one line; each gets one JSON object back on one line, {"ok": true, ...} or
// {"ok": false, "error": "..."}. Commands:
//   {"cmd":"set","link":L,"fault":F,"direction":"up|down|both","params":{k:v,...}}
//   {"cmd":"clear"[,"link":L][,"fault":F][,"direction":D]}
//   {"cmd":"list"}                      faults per link
//   {"cmd":"stats"[,"link":L]}          counters and faults per link
//   {"cmd":"partition","name":N,"groups":[[..],[..]][,"one_way":true][,"bridge":X]}
//   {"cmd":"partition","name":N,"links":[..][,"direction":D]}
//   {"cmd":"heal"[,"name":N]}
//   {"cmd":"reset","link":L}
//   {"cmd":"events"[,"last":N]}
// A client that sends garbage gets an error reply; one that disconnects mid-line is simply
// dropped. Neither disturbs forwarding.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "net/json_lines.h"
#include "netsim/simulator.h"

namespace netsim {

class ControlServer {
 public:
  // Listens on `socket_path` (net::JsonLinesServer on the simulator's thread: mode 0600, a
  // stale socket file is replaced, a live one refused). Throws on failure.
  ControlServer(Simulator& simulator, std::string socket_path);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Exposed for tests: the reply to one request.
  static nlohmann::json handle(Simulator& simulator, const nlohmann::json& request);

 private:
  Simulator& simulator_;
  std::string path_;
  std::unique_ptr<tandem::net::JsonLinesServer> server_;
};

// Sends one request and waits for its reply (net::json_lines_request). Throws
// std::runtime_error if the socket cannot be reached or the reply does not come within
// `timeout`.
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               Duration timeout = std::chrono::seconds(10));

}  // namespace netsim
