#include "netsim/control.h"

#include <unistd.h>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace netsim {

using boost::system::error_code;
using local = asio::local::stream_protocol;

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

struct ControlServer::State {
  explicit State(asio::io_context& io) : acceptor(io) {}
  local::acceptor acceptor;
  bool running = true;
  std::vector<std::weak_ptr<local::socket>> clients;
};

namespace {

asio::awaitable<void> serve_client(Simulator& sim, std::shared_ptr<local::socket> socket) {
  asio::streambuf buffer(kMaxLine);
  error_code ec;
  for (;;) {
    co_await asio::async_read_until(*socket, buffer, '\n', asio::redirect_error(asio::use_awaitable, ec));
    if (ec == asio::error::not_found) {
      const std::string reply = nlohmann::json{{"ok", false}, {"error", "request line too long"}}.dump() + "\n";
      co_await asio::async_write(*socket, asio::buffer(reply), asio::redirect_error(asio::use_awaitable, ec));
      break;
    }
    if (ec) break;  // closed, possibly mid-line: nothing to answer
    std::istream in(&buffer);
    std::string line;
    std::getline(in, line);
    if (line.empty()) continue;
    nlohmann::json reply;
    auto request = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (request.is_discarded()) reply = {{"ok", false}, {"error", "request is not valid JSON"}};
    else reply = ControlServer::handle(sim, request);
    const std::string text = reply.dump() + "\n";
    co_await asio::async_write(*socket, asio::buffer(text), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) break;
  }
  socket->close(ec);
}

asio::awaitable<void> accept_clients(Simulator& sim, std::shared_ptr<ControlServer::State> state) {
  for (;;) {
    auto socket = std::make_shared<local::socket>(sim.io());
    error_code ec;
    co_await state->acceptor.async_accept(*socket, asio::redirect_error(asio::use_awaitable, ec));
    if (!state->running) co_return;
    if (ec) continue;
    std::erase_if(state->clients, [](const auto& w) { return w.expired(); });
    state->clients.push_back(socket);
    asio::co_spawn(sim.io(), serve_client(sim, socket), asio::detached);
  }
}

}  // namespace

ControlServer::ControlServer(Simulator& simulator, std::string socket_path)
    : simulator_(simulator), path_(std::move(socket_path)) {
  simulator_.call([&] {
    state_ = std::make_shared<State>(simulator_.io());
    ::unlink(path_.c_str());  // a stale socket from an earlier run
    error_code ec;
    state_->acceptor.open(local(), ec);
    if (!ec) state_->acceptor.bind(local::endpoint(path_), ec);
    if (!ec) state_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error(fmt::format("control socket '{}': {}", path_, ec.message()));
    asio::co_spawn(simulator_.io(), accept_clients(simulator_, state_), asio::detached);
  });
}

ControlServer::~ControlServer() {
  try {
    simulator_.call([&] {
      state_->running = false;
      error_code ignored;
      state_->acceptor.close(ignored);
      for (auto& weak : state_->clients) {
        if (auto s = weak.lock()) s->close(ignored);
      }
    });
  } catch (...) {
  }
  ::unlink(path_.c_str());
}

nlohmann::json control_request(const std::string& socket_path, const nlohmann::json& request, Duration timeout) {
  asio::io_context io;
  local::socket socket(io);
  error_code ec;
  socket.connect(local::endpoint(socket_path), ec);
  if (ec) throw std::runtime_error(fmt::format("cannot reach control socket '{}': {}", socket_path, ec.message()));
  const std::string line = request.dump() + "\n";
  asio::write(socket, asio::buffer(line), ec);
  if (ec) throw std::runtime_error(fmt::format("control socket: {}", ec.message()));

  asio::streambuf buffer(kMaxLine * 64);
  std::optional<error_code> result;
  asio::async_read_until(socket, buffer, '\n', [&](error_code e, size_t) { result = e; });
  io.run_for(timeout);
  if (!result) throw std::runtime_error("control socket: no reply in time");
  if (*result) throw std::runtime_error(fmt::format("control socket: {}", result->message()));
  std::istream in(&buffer);
  std::string reply;
  std::getline(in, reply);
  auto json = nlohmann::json::parse(reply, nullptr, false);
  if (json.is_discarded()) throw std::runtime_error("control socket: reply is not JSON");
  return json;
}

}  // namespace netsim
