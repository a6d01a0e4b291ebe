#include "netsim/simulator.h"

#include <algorithm>
#include <fmt/format.h>
#include <set>
#include <spdlog/spdlog.h>
#include <stdexcept>

#include "netsim/scenario.h"
#include "netsim/tcp_link.h"
#include "netsim/udp_link.h"

namespace netsim {

Simulator::Simulator(SimulatorOptions options) : seed_(options.seed) {
  if (!options.event_log_path.empty()) events_.open_file(options.event_log_path);
  work_.emplace(asio::make_work_guard(io_));
  thread_ = std::thread([this] {
    for (;;) {
      try {
        io_.run();
        return;
      } catch (const std::exception& e) {
        // A handler must never bring the proxy down; log and keep serving.
        spdlog::error("netsim: io thread: {}", e.what());
      }
    }
  });
}

Simulator::~Simulator() {
  try {
    call([this] {
      for (auto& run : scenarios_) run->cancel();
      for (auto& [name, l] : links_) l->stop();
    });
  } catch (const std::exception& e) {
    spdlog::error("netsim: stopping: {}", e.what());
  }
  // With every socket and timer closed, the coroutines unwind and run() returns by itself.
  work_.reset();
  auto done = std::async(std::launch::async, [this] { thread_.join(); });
  if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    spdlog::warn("netsim: io thread still busy after stop; forcing it");
    io_.stop();
    done.wait();
  }
  links_.clear();
  retired_links_.clear();
}

Link& Simulator::link(const std::string& name) const {
  auto it = links_.find(name);
  if (it == links_.end()) throw std::invalid_argument(fmt::format("unknown link '{}'", name));
  return *it->second;
}

uint16_t Simulator::add_link(const LinkConfig& config) {
  if (config.name.empty()) throw std::invalid_argument("a link needs a name");
  if (config.target_port == 0) throw std::invalid_argument(fmt::format("link '{}' needs a target port", config.name));
  return call([&] {
    if (links_.count(config.name)) throw std::invalid_argument(fmt::format("link '{}' already exists", config.name));
    std::unique_ptr<Link> l;
    if (config.protocol == Protocol::Tcp) l = std::make_unique<TcpLink>(io_, config, seed_, events_);
    else l = std::make_unique<UdpLink>(io_, config, seed_, events_);
    l->start();
    const uint16_t port = l->listen_port();
    events_.emit("link_started", {{"link", config.name},
                                  {"protocol", std::string(to_string(config.protocol))},
                                  {"listen", fmt::format("{}:{}", config.listen_host, port)},
                                  {"target", fmt::format("{}:{}", config.target_host, config.target_port)}});
    links_.emplace(config.name, std::move(l));
    return port;
  });
}

void Simulator::remove_link(const std::string& name) {
  call([&] {
    link(name).stop();
    // Its coroutines still have to see their cancelled operations and end; they touch the
    // link when they do, so it lives on (stopped) until the simulator goes.
    auto it = links_.find(name);
    retired_links_.push_back(std::move(it->second));
    links_.erase(it);
  });
}

std::vector<std::string> Simulator::link_names() const {
  return call([&] {
    std::vector<std::string> names;
    for (auto& [name, l] : links_) names.push_back(name);
    return names;
  });
}

uint16_t Simulator::listen_port(const std::string& name) const {
  return call([&] { return link(name).listen_port(); });
}

uint64_t Simulator::set_fault(const std::string& name, const FaultSpec& fault) {
  return call([&] { return link(name).add_fault(fault); });
}

size_t Simulator::clear_faults(const std::string& name, std::optional<FaultKind> kind,
                               std::optional<Direction> direction) {
  return call([&] { return link(name).clear_faults(kind, direction, std::nullopt); });
}

size_t Simulator::clear_all() {
  return call([&] {
    size_t n = 0;
    for (auto& [name, l] : links_) n += l->clear_faults(std::nullopt, std::nullopt, std::nullopt);
    return n;
  });
}

void Simulator::reset_connections(const std::string& name) {
  call([&] { link(name).reset_connections(); });
}

std::vector<std::pair<std::string, Direction>> Simulator::partition(const PartitionSpec& spec) {
  if (spec.name.empty()) throw std::invalid_argument("a partition needs a name");
  if (spec.groups.empty() == spec.links.empty())
    throw std::invalid_argument("a partition names either node groups or links, not both and not neither");
  if (spec.one_way && spec.groups.size() != 2)
    throw std::invalid_argument("a one-way partition needs exactly two groups");
  if (!spec.groups.empty() && spec.groups.size() < 2)
    throw std::invalid_argument("a partition needs at least two groups");

  return call([&] {
    std::vector<std::pair<std::string, Direction>> cuts;
    if (!spec.links.empty()) {
      for (const auto& name : spec.links) {
        link(name);  // validates every name before anything changes
        cuts.emplace_back(name, spec.direction);
      }
    } else {
      auto groups_of = [&](const std::string& node) {
        std::set<size_t> in;
        for (size_t i = 0; i < spec.groups.size(); ++i) {
          if (std::find(spec.groups[i].begin(), spec.groups[i].end(), node) != spec.groups[i].end()) in.insert(i);
        }
        return in;
      };
      for (auto& [name, l] : links_) {
        const auto from = groups_of(l->config().from_node);
        const auto to = groups_of(l->config().to_node);
        if (from.empty() || to.empty()) continue;  // an end not named in the partition is untouched
        if (spec.one_way) {
          const bool bridge = (from.size() > 1) || (to.size() > 1);
          if (bridge) continue;
          if (from.count(0) && to.count(1)) cuts.emplace_back(name, Direction::Up);
          else if (from.count(1) && to.count(0)) cuts.emplace_back(name, Direction::Down);
          continue;
        }
        std::vector<size_t> shared;
        std::set_intersection(from.begin(), from.end(), to.begin(), to.end(), std::back_inserter(shared));
        if (shared.empty()) cuts.emplace_back(name, Direction::Both);
      }
    }
    // One handler on the io thread: every cut takes effect before any more data moves.
    FaultSpec cut;
    cut.kind = FaultKind::Partition;
    nlohmann::json cut_list = nlohmann::json::array();
    for (auto& [name, direction] : cuts) {
      cut.direction = direction;
      link(name).add_fault(cut, spec.name);
      cut_list.push_back({{"link", name}, {"direction", std::string(to_string(direction))}});
    }
    events_.emit("partition", {{"name", spec.name}, {"cuts", cut_list}});
    return cuts;
  });
}

size_t Simulator::heal(const std::string& name) {
  return call([&] {
    size_t removed = 0;
    for (auto& [link_name, l] : links_) {
      if (!name.empty()) {
        removed += l->clear_faults(FaultKind::Partition, std::nullopt, name);
        continue;
      }
      // Every partition: the faults a partition set carry its name as their tag.
      for (const auto& f : l->faults()) {
        if (f.spec.kind == FaultKind::Partition && !f.tag.empty())
          removed += l->clear_faults(FaultKind::Partition, f.spec.direction, f.tag);
      }
    }
    events_.emit("heal", {{"name", name.empty() ? "*" : name}, {"faults_removed", removed}});
    return removed;
  });
}

LinkStats Simulator::stats(const std::string& name) const {
  return call([&] { return link(name).stats(); });
}

std::vector<LinkStats> Simulator::all_stats() const {
  return call([&] {
    std::vector<LinkStats> all;
    for (auto& [name, l] : links_) all.push_back(l->stats());
    return all;
  });
}

void Simulator::reseed(uint64_t seed) {
  call([&] {
    seed_ = seed;
    for (auto& [name, l] : links_) l->reseed(seed);
    events_.emit("reseed", {{"seed", seed}});
  });
}

std::shared_ptr<ScenarioRun> Simulator::run_scenario(const Scenario& scenario) {
  return call([&] {
    for (const auto& step : scenario.steps) {
      if (!step.link.empty()) link(step.link);  // refuse the whole scenario on an unknown link
      for (const auto& l : step.partition.links) link(l);
    }
    auto run = std::make_shared<ScenarioRun>(*this, scenario);
    scenarios_.push_back(run);
    run->start();
    return run;
  });
}

FaultSpec fault(std::string_view kind, Direction direction, const std::vector<std::pair<std::string, std::string>>& params) {
  ParamList list;
  for (const auto& [k, v] : params) list.emplace_back(k, ParamValue{v, "argument"});
  std::string error;
  auto spec = make_fault(kind, direction, list, error);
  if (!spec) throw std::invalid_argument(error);
  return *spec;
}

}  // namespace netsim
