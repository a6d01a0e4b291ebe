#include "netsim/control.h"

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace netsim {

namespace {

constexpr size_t kMaxLine = 1 << 20;

std::string text_field(const nlohmann::json& request, const char* key, bool required) {
  auto it = request.find(key);
  if (it == request.end()) {
    if (required) throw std::invalid_argument(fmt::format("missing '{}'", key));
    return "";
  }
  if (!it->is_string()) throw std::invalid_argument(fmt::format("'{}' must be a string", key));
  return it->get<std::string>();
}

std::optional<Direction> direction_field(const nlohmann::json& request) {
  const std::string text = text_field(request, "direction", false);
  if (text.empty()) return std::nullopt;
  auto d = parse_direction(text);
  if (!d) throw std::invalid_argument(fmt::format("'{}' is not a direction (up, down, both)", text));
  return d;
}

std::vector<std::string> string_array(const nlohmann::json& value, const char* what) {
  if (!value.is_array()) throw std::invalid_argument(fmt::format("'{}' must be an array of strings", what));
  std::vector<std::string> out;
  for (const auto& item : value) {
    if (!item.is_string()) throw std::invalid_argument(fmt::format("'{}' must be an array of strings", what));
    out.push_back(item.get<std::string>());
  }
  return out;
}

nlohmann::json faults_json(const LinkStats& s) { return to_json(s)["faults"]; }

}  // namespace

nlohmann::json ControlServer::handle(Simulator& sim, const nlohmann::json& request) {
  try {
    if (!request.is_object()) throw std::invalid_argument("a request is a JSON object");
    const std::string cmd = text_field(request, "cmd", true);
    nlohmann::json reply = {{"ok", true}};
    if (cmd == "ping") {
      return reply;
    }
    if (cmd == "set") {
      const std::string link = text_field(request, "link", true);
      const std::string kind = text_field(request, "fault", true);
      ParamList params;
      if (auto it = request.find("params"); it != request.end()) {
        if (!it->is_object()) throw std::invalid_argument("'params' must be an object");
        for (const auto& [key, value] : it->items()) {
          ParamValue pv{std::string(), "argument"};
          if (value.is_string()) pv.value = value.get<std::string>();
          else if (value.is_number_integer()) pv.value = value.get<int64_t>();
          else if (value.is_number()) pv.value = value.get<double>();
          else if (value.is_boolean()) pv.value = value.get<bool>();
          else throw std::invalid_argument(fmt::format("param '{}' must be a string, number or boolean", key));
          params.emplace_back(key, std::move(pv));
        }
      }
      std::string error;
      auto spec = make_fault(kind, direction_field(request).value_or(Direction::Both), params, error);
      if (!spec) throw std::invalid_argument(error);
      reply["id"] = sim.set_fault(link, *spec);
      return reply;
    }
    if (cmd == "clear") {
      const std::string link = text_field(request, "link", false);
      const std::string kind_name = text_field(request, "fault", false);
      std::optional<FaultKind> kind;
      if (!kind_name.empty()) {
        kind = parse_fault_kind(kind_name);
        if (!kind) throw std::invalid_argument(fmt::format("unknown fault '{}' (known: {})", kind_name, fault_kind_names()));
      }
      const auto direction = direction_field(request);
      if (link.empty()) {
        if (kind || direction) throw std::invalid_argument("'fault' and 'direction' need a 'link'");
        reply["cleared"] = sim.clear_all();
      } else {
        reply["cleared"] = sim.clear_faults(link, kind, direction);
      }
      return reply;
    }
    if (cmd == "list" || cmd == "stats") {
      const std::string link = text_field(request, "link", false);
      std::vector<LinkStats> all;
      if (link.empty()) all = sim.all_stats();
      else all.push_back(sim.stats(link));
      nlohmann::json links = nlohmann::json::array();
      for (const auto& s : all) {
        if (cmd == "list") links.push_back({{"name", s.name}, {"faults", faults_json(s)}});
        else links.push_back(to_json(s));
      }
      reply["links"] = links;
      return reply;
    }
    if (cmd == "partition") {
      PartitionSpec spec;
      if (auto name = text_field(request, "name", false); !name.empty()) spec.name = name;
      if (auto it = request.find("groups"); it != request.end()) {
        if (!it->is_array()) throw std::invalid_argument("'groups' must be an array of arrays of node names");
        for (const auto& group : *it) spec.groups.push_back(string_array(group, "groups"));
      }
      if (auto it = request.find("links"); it != request.end()) spec.links = string_array(*it, "links");
      if (auto it = request.find("one_way"); it != request.end()) {
        if (!it->is_boolean()) throw std::invalid_argument("'one_way' must be true or false");
        spec.one_way = it->get<bool>();
      }
      if (auto bridge = text_field(request, "bridge", false); !bridge.empty()) {
        if (spec.groups.size() < 2) throw std::invalid_argument("a bridge needs two groups");
        for (auto& group : spec.groups) group.push_back(bridge);
      }
      spec.direction = direction_field(request).value_or(Direction::Both);
      nlohmann::json cuts = nlohmann::json::array();
      for (const auto& [link, direction] : sim.partition(spec))
        cuts.push_back({{"link", link}, {"direction", std::string(to_string(direction))}});
      reply["cuts"] = cuts;
      return reply;
    }
    if (cmd == "heal") {
      reply["healed"] = sim.heal(text_field(request, "name", false));
      return reply;
    }
    if (cmd == "reset") {
      sim.reset_connections(text_field(request, "link", true));
      return reply;
    }
    if (cmd == "events") {
      size_t last = 100;
      if (auto it = request.find("last"); it != request.end()) {
        if (!it->is_number_unsigned()) throw std::invalid_argument("'last' must be a non-negative integer");
        last = it->get<size_t>();
      }
      auto events = sim.events().recent();
      if (events.size() > last) events.erase(events.begin(), events.end() - static_cast<ptrdiff_t>(last));
      reply["events"] = events;
      return reply;
    }
    throw std::invalid_argument(
        fmt::format("unknown command '{}' (set, clear, list, stats, partition, heal, reset, events, ping)", cmd));
  } catch (const std::exception& e) {
    return {{"ok", false}, {"error", e.what()}};
  }
}

ControlServer::ControlServer(Simulator& simulator, std::string socket_path)
    : simulator_(simulator), path_(std::move(socket_path)) {
  // On the simulator's thread: requests are served there, between its forwarding work.
  simulator_.call([&] {
    server_ = std::make_unique<tandem::net::JsonLinesServer>(
        simulator_.io(), path_, [&sim = simulator_](const nlohmann::json& request) { return handle(sim, request); },
        tandem::net::JsonLinesOptions{.max_line = kMaxLine, .idle_timeout = std::chrono::milliseconds(0),
                                      .name = "netsim control"});
  });
}

ControlServer::~ControlServer() {
  try {
    simulator_.call([&] { server_->stop(); });
  } catch (...) {
  }
}

nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request, Duration timeout) {
  return tandem::net::json_lines_request(socket_path, request,
                                         std::chrono::duration_cast<std::chrono::milliseconds>(timeout),
                                         " (is tandem-netsim running?)", kMaxLine * 64);
}

}  // namespace netsim
