// The C++ API of netsim: a set of named links served by one io thread, their faults,
// counters, partitions over sets of links, scenarios and the fault-event log.
//
//   netsim::Simulator sim({.seed = 7});
//   sim.add_link({.name = "repl", .target_port = 7001});          // listens on a free port
//   sim.set_fault("repl", netsim::fault("delay", netsim::Direction::Up, {{"delay", "20ms"}}));
//   auto stats = sim.stats("repl");
//
// Every method may be called from any thread (including from the io thread itself, e.g. by
// the control server); it runs on the io thread and returns once the change is in effect.
// Errors are reported by throwing std::invalid_argument (bad request) or
// std::runtime_error (the system refused, e.g. a port in use).
#pragma once

#include <future>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "netsim/event_log.h"
#include "netsim/fault.h"
#include "netsim/link.h"

namespace netsim {

struct SimulatorOptions {
  uint64_t seed = 1;
  std::string event_log_path;  // empty: events are kept in memory only
};

// A partition over links, applied and healed in one step.
//  - groups: sets of node names; a link whose two end nodes (LinkConfig::from_node/to_node)
//    share no group is cut. A node listed in two groups is a bridge (it sees both sides).
//  - one_way (exactly two groups): only traffic from groups[0] towards groups[1] is cut.
//  - links: alternatively, name the links to cut directly, in `direction`.
struct PartitionSpec {
  std::string name = "partition";
  std::vector<std::vector<std::string>> groups;
  bool one_way = false;
  std::vector<std::string> links;
  Direction direction = Direction::Both;
};

struct Scenario;
class ScenarioRun;

class Simulator {
 public:
  explicit Simulator(SimulatorOptions options = {});
  ~Simulator();
  Simulator(const Simulator&) = delete;
  Simulator& operator=(const Simulator&) = delete;

  // Starts a link; returns the port it listens on.
  uint16_t add_link(const LinkConfig& config);
  void remove_link(const std::string& name);
  std::vector<std::string> link_names() const;
  uint16_t listen_port(const std::string& link) const;

  uint64_t set_fault(const std::string& link, const FaultSpec& fault);
  // Removes matching faults; returns how many. Never waits for data in flight.
  size_t clear_faults(const std::string& link, std::optional<FaultKind> kind = std::nullopt,
                      std::optional<Direction> direction = std::nullopt);
  size_t clear_all();
  void reset_connections(const std::string& link);

  // Returns the links cut and the direction each was cut in.
  std::vector<std::pair<std::string, Direction>> partition(const PartitionSpec& spec);
  // Heals the named partition, or every partition when `name` is empty. Returns faults removed.
  size_t heal(const std::string& name = "");

  LinkStats stats(const std::string& link) const;
  std::vector<LinkStats> all_stats() const;

  // Restarts every link's random streams from `seed` (a scenario does this at its start).
  void reseed(uint64_t seed);
  uint64_t seed() const { return seed_; }

  // Runs a scenario's timeline on the io thread. The run stops early if the simulator stops.
  std::shared_ptr<ScenarioRun> run_scenario(const Scenario& scenario);

  EventLog& events() { return events_; }

  // Runs `fn` on the io thread and returns its result (rethrowing its exception).
  template <typename Fn>
  auto call(Fn&& fn) const -> decltype(fn());

  asio::io_context& io() { return io_; }

 private:
  Link& link(const std::string& name) const;

  // Order matters: links die before the io_context that their sockets belong to.
  mutable asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  EventLog events_;
  uint64_t seed_;
  std::map<std::string, std::unique_ptr<Link>> links_;
  std::vector<std::unique_ptr<Link>> retired_links_;  // removed, kept until shutdown
  std::vector<std::shared_ptr<ScenarioRun>> scenarios_;
  std::thread thread_;
};

// Convenience for tests and tools: builds a fault from text parameters, throwing
// std::invalid_argument on a bad one.
FaultSpec fault(std::string_view kind, Direction direction = Direction::Both,
                const std::vector<std::pair<std::string, std::string>>& params = {});

template <typename Fn>
auto Simulator::call(Fn&& fn) const -> decltype(fn()) {
  using Result = decltype(fn());
  if (io_.get_executor().running_in_this_thread()) return fn();
  std::promise<Result> promise;
  auto future = promise.get_future();
  asio::post(io_, [&] {
    try {
      if constexpr (std::is_void_v<Result>) {
        fn();
        promise.set_value();
      } else {
        promise.set_value(fn());
      }
    } catch (...) {
      promise.set_exception(std::current_exception());
    }
  });
  return future.get();
}

}  // namespace netsim
