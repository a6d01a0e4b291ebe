// The client side of tandemd's control socket (JSON lines, see replicator/control.h for the
// commands): one request, one reply.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "net/json_lines.h"

namespace tandem::control {

// The control socket could not be reached (no daemon, wrong path, permissions).
using ControlUnavailable = net::Unreachable;

// Sends one request and returns the reply. Throws ControlUnavailable if the socket cannot be
// reached ("... (is tandemd running?)"), std::runtime_error if the reply is missing, late or
// not a JSON object with a boolean "ok".
nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace tandem::control
