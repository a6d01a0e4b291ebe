#include "netsim/scenario.h"

#include <algorithm>
#include <spdlog/spdlog.h>

#include "netsim/toml_util.h"

namespace netsim {

using detail::fail_at;
using detail::line_of;

namespace {

std::vector<std::string> string_list(const toml::node& node, const std::string& source, std::string_view key) {
  const toml::array* array = node.as_array();
  if (!array) fail_at(source, line_of(node), key, "expected an array of strings");
  std::vector<std::string> out;
  for (const auto& item : *array) out.push_back(detail::require_string(item, source, key));
  return out;
}

ScenarioStep parse_step(const toml::table& table, const std::string& source) {
  ScenarioStep step;
  step.line = line_of(table);
  std::string action = "set";
  if (auto node = table.get("action")) action = detail::require_string(*node, source, "action");
  if (action == "set") step.action = ScenarioStep::Action::Set;
  else if (action == "clear") step.action = ScenarioStep::Action::Clear;
  else if (action == "partition") step.action = ScenarioStep::Action::Partition;
  else if (action == "heal") step.action = ScenarioStep::Action::Heal;
  else if (action == "reset") step.action = ScenarioStep::Action::Reset;
  else fail_at(source, line_of(*table.get("action")), "action",
               fmt::format("'{}' is not an action (set, clear, partition, heal, reset)", action));

  auto at = table.get("at");
  if (!at) fail_at(source, step.line, "at", "every step needs 'at' (e.g. at = \"2s\")");
  {
    std::string problem;
    auto parsed = parse_duration(detail::require_string(*at, source, "at"), problem);
    if (!parsed) fail_at(source, line_of(*at), "at", problem);
    step.at = *parsed;
  }

  std::string fault_name;
  Direction direction = Direction::Both;
  bool has_direction = false;
  ParamList params;
  for (const auto& [key_view, node] : table) {
    const std::string key(key_view.str());
    if (key == "at" || key == "action") continue;
    if (key == "link") {
      step.link = detail::require_string(node, source, key);
    } else if (key == "fault") {
      fault_name = detail::require_string(node, source, key);
    } else if (key == "direction") {
      const std::string text = detail::require_string(node, source, key);
      auto d = parse_direction(text);
      if (!d) fail_at(source, line_of(node), key, fmt::format("'{}' is not a direction (up, down, both)", text));
      direction = *d;
      has_direction = true;
    } else if (step.action == ScenarioStep::Action::Partition && key == "groups") {
      const toml::array* groups = node.as_array();
      if (!groups) fail_at(source, line_of(node), key, "expected an array of arrays of node names");
      for (const auto& group : *groups) step.partition.groups.push_back(string_list(group, source, key));
    } else if (step.action == ScenarioStep::Action::Partition && key == "links") {
      step.partition.links = string_list(node, source, key);
    } else if (step.action == ScenarioStep::Action::Partition && key == "one_way") {
      if (!node.is_boolean()) fail_at(source, line_of(node), key, "expected true or false");
      step.partition.one_way = *node.value<bool>();
    } else if (step.action == ScenarioStep::Action::Partition && key == "bridge") {
      const std::string bridge = detail::require_string(node, source, key);
      // Applied after the loop, once the groups are known.
      params.emplace_back("bridge", ParamValue{bridge, fmt::format("{}:{}", source, line_of(node))});
    } else if ((step.action == ScenarioStep::Action::Partition || step.action == ScenarioStep::Action::Heal) &&
               key == "name") {
      step.partition.name = detail::require_string(node, source, key);
      step.heal_name = step.partition.name;
    } else if (step.action == ScenarioStep::Action::Set) {
      params.emplace_back(key, detail::to_param(node, source, key));
    } else {
      fail_at(source, line_of(node), key, fmt::format("not a key of a '{}' step", action));
    }
  }

  switch (step.action) {
    case ScenarioStep::Action::Set: {
      if (step.link.empty()) fail_at(source, step.line, "link", "a fault step needs 'link'");
      if (fault_name.empty()) fail_at(source, step.line, "fault", "a fault step needs 'fault'");
      std::string error;
      auto spec = make_fault(fault_name, direction, params, error);
      if (!spec) {
        const toml::node* fault_node = table.get("fault");
        if (error.rfind("unknown fault", 0) == 0) fail_at(source, line_of(*fault_node), "fault", error);
        throw std::invalid_argument(error.find(':') != std::string::npos && error.rfind(source, 0) == 0
                                        ? error
                                        : fmt::format("{}:{}: {}", source, step.line, error));
      }
      step.fault = *spec;
      break;
    }
    case ScenarioStep::Action::Clear:
      if (step.link.empty()) fail_at(source, step.line, "link", "a clear step needs 'link'");
      if (!fault_name.empty()) {
        step.clear_kind = parse_fault_kind(fault_name);
        if (!step.clear_kind)
          fail_at(source, line_of(*table.get("fault")), "fault",
                  fmt::format("unknown fault '{}' (known: {})", fault_name, fault_kind_names()));
      }
      if (has_direction) step.clear_direction = direction;
      break;
    case ScenarioStep::Action::Partition:
      step.partition.direction = direction;
      for (const auto& [key, value] : params) {
        if (key != "bridge") continue;
        if (step.partition.groups.size() < 2) fail_at(source, step.line, "bridge", "a bridge needs two groups");
        for (auto& group : step.partition.groups) group.push_back(std::get<std::string>(value.value));
      }
      if (step.partition.groups.empty() == step.partition.links.empty())
        fail_at(source, step.line, "groups", "a partition step needs either 'groups' or 'links'");
      if (!step.partition.groups.empty() && step.partition.groups.size() < 2)
        fail_at(source, step.line, "groups", "a partition needs at least two groups");
      if (step.partition.one_way && step.partition.groups.size() != 2)
        fail_at(source, step.line, "one_way", "a one-way partition needs exactly two groups");
      break;
    case ScenarioStep::Action::Heal:
      break;
    case ScenarioStep::Action::Reset:
      if (step.link.empty()) fail_at(source, step.line, "link", "a reset step needs 'link'");
      break;
  }
  return step;
}

}  // namespace

Scenario parse_scenario(std::string_view toml_text, const std::string& source) {
  const toml::table root = detail::parse_toml(toml_text, source);
  Scenario scenario;
  for (const auto& [key_view, node] : root) {
    const std::string key(key_view.str());
    if (key == "seed") {
      scenario.seed = detail::require_seed(node, source, key);
    } else if (key == "step") {
      const toml::array* steps = node.as_array();
      if (!steps) fail_at(source, line_of(node), key, "write steps as [[step]] tables");
      for (const auto& item : *steps) {
        const toml::table* table = item.as_table();
        if (!table) fail_at(source, line_of(item), key, "write steps as [[step]] tables");
        scenario.steps.push_back(parse_step(*table, source));
      }
    } else if (key == "name" || key == "description") {
      detail::require_string(node, source, key);
    } else {
      fail_at(source, line_of(node), key, "unknown top-level key (expected seed, name, description, [[step]])");
    }
  }
  std::stable_sort(scenario.steps.begin(), scenario.steps.end(),
                   [](const ScenarioStep& a, const ScenarioStep& b) { return a.at < b.at; });
  return scenario;
}

Scenario load_scenario(const std::string& path) { return parse_scenario(detail::read_file(path), path); }

ScenarioRun::ScenarioRun(Simulator& simulator, Scenario scenario)
    : simulator_(simulator), scenario_(std::move(scenario)), timer_(simulator.io()) {}

void ScenarioRun::start() {
  if (scenario_.seed) simulator_.reseed(*scenario_.seed);
  simulator_.events().emit("scenario_start", {{"steps", scenario_.steps.size()}, {"seed", simulator_.seed()}});
  asio::co_spawn(simulator_.io(), run(shared_from_this()), asio::detached);
}

void ScenarioRun::cancel() {
  cancelled_ = true;
  timer_.cancel();
  finish();
}

asio::awaitable<void> ScenarioRun::run(std::shared_ptr<ScenarioRun> /*keeps the run alive*/) {
  const auto start = Clock::now();
  boost::system::error_code ec;
  for (const auto& step : scenario_.steps) {
    if (cancelled_) co_return;
    timer_.expires_at(start + step.at);
    co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    if (cancelled_) co_return;
    apply(step);
    {
      std::lock_guard lock(mutex_);
      applied_.fetch_add(1);
    }
    progress_.notify_all();
  }
  simulator_.events().emit("scenario_end", {{"steps", scenario_.steps.size()}});
  finish();
}

void ScenarioRun::apply(const ScenarioStep& step) {
  try {
    switch (step.action) {
      case ScenarioStep::Action::Set: simulator_.set_fault(step.link, step.fault); break;
      case ScenarioStep::Action::Clear: simulator_.clear_faults(step.link, step.clear_kind, step.clear_direction); break;
      case ScenarioStep::Action::Partition: simulator_.partition(step.partition); break;
      case ScenarioStep::Action::Heal: simulator_.heal(step.heal_name); break;
      case ScenarioStep::Action::Reset: simulator_.reset_connections(step.link); break;
    }
  } catch (const std::exception& e) {
    // A step that cannot apply (say, a UDP-only fault on a TCP link) is reported, and the
    // timeline goes on: a drill should not stop half way.
    spdlog::error("netsim scenario, step at line {}: {}", step.line, e.what());
    simulator_.events().emit("scenario_error", {{"line", step.line}, {"error", e.what()}});
  }
}

void ScenarioRun::finish() {
  {
    std::lock_guard lock(mutex_);
    done_ = true;
  }
  progress_.notify_all();
}

bool ScenarioRun::wait_for_steps(size_t n, Duration timeout) const {
  std::unique_lock lock(mutex_);
  return progress_.wait_for(lock, timeout, [&] { return applied_.load() >= n || done_.load(); }) &&
         applied_.load() >= n;
}

}  // namespace netsim
