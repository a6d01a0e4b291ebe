#include "control/client.h"

namespace tandem::control {

nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request,
                               std::chrono::milliseconds timeout) {
  return net::json_lines_request(socket_path, request, timeout, " (is tandemd running?)");
}

}  // namespace tandem::control
