#include "replicator/control.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "net/endpoint.h"

namespace tandem::replicator {

using nlohmann::json;

namespace {

std::string string_field(const json& request, const char* key) {
  auto it = request.find(key);
  if (it == request.end()) throw std::invalid_argument(fmt::format("missing \"{}\"", key));
  if (!it->is_string()) throw std::invalid_argument(fmt::format("\"{}\" must be a string", key));
  return it->get<std::string>();
}

json result(const Result<void>& r) {
  if (r) return {{"ok", true}};
  return net::error_reply(r.error().message);
}

}  // namespace

json ControlServer::handle(ControlHandler& handler, const json& request) {
  try {
    if (!request.is_object()) return net::error_reply("a request is a JSON object such as {\"cmd\":\"status\"}");
    const std::string cmd = string_field(request, "cmd");
    if (cmd == "status") return {{"ok", true}, {"status", status_to_json(handler.status())}};
    if (cmd == "protect") {
      const std::string peer = string_field(request, "peer");
      net::parse_endpoint(peer);  // refuse a bad address here, with the reason, before the node sees it
      return result(handler.protect(peer));
    }
    if (cmd == "unprotect") return result(handler.unprotect());
    if (cmd == "failover") return result(handler.failover());
    return net::error_reply(fmt::format("unknown command \"{}\" (known: status, protect, unprotect, failover)", cmd));
  } catch (const std::invalid_argument& e) {
    return net::error_reply(e.what());
  } catch (const std::exception& e) {
    // A handler that throws is a bug in the node, not the client's fault; still answer.
    spdlog::error("control: request {} failed: {}", request.dump(), e.what());
    return net::error_reply(fmt::format("internal error: {}", e.what()));
  }
}

ControlServer::ControlServer(std::string socket_path, ControlHandler& handler)
    : server_(std::move(socket_path), [&handler](const json& request) { return handle(handler, request); },
              net::JsonLinesOptions{.max_line = kMaxControlLine, .name = "control"}) {}

}  // namespace tandem::replicator
