// Scenario files: a timeline of fault steps on named links, in TOML.
//
//   seed = 7                      # optional: reseeds every link when the run starts
//   [[step]]
//   at = "2s"                     # from the start of the run
//   link = "repl"
//   fault = "partition"
//   direction = "both"            # up | down | both (default both)
//   for = "500ms"                 # any fault parameter or schedule key may follow
//
//   [[step]]
//   at = "3s"
//   action = "partition"          # set (default) | clear | partition | heal | reset
//   groups = [["primary", "witness"], ["secondary"]]
//
// Errors name the file, the line and the key.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "netsim/fault.h"
#include "netsim/simulator.h"

namespace netsim {

struct ScenarioStep {
  enum class Action { Set, Clear, Partition, Heal, Reset };
  Duration at{0};
  Action action = Action::Set;
  std::string link;
  FaultSpec fault;                         // Set
  std::optional<FaultKind> clear_kind;     // Clear (nullopt = every fault of the link)
  std::optional<Direction> clear_direction;
  PartitionSpec partition;                 // Partition
  std::string heal_name;                   // Heal (empty = all)
  int line = 0;
};

struct Scenario {
  std::optional<uint64_t> seed;
  std::vector<ScenarioStep> steps;  // sorted by `at`, file order kept for equal times
};

// Throw std::invalid_argument("<source>:<line>: key '<key>': <problem>").
Scenario parse_scenario(std::string_view toml_text, const std::string& source = "scenario");
Scenario load_scenario(const std::string& path);

// One run of a scenario on a simulator's io thread.
class ScenarioRun : public std::enable_shared_from_this<ScenarioRun> {
 public:
  ScenarioRun(Simulator& simulator, Scenario scenario);
  void start();   // io thread
  void cancel();  // io thread
  size_t steps_applied() const { return applied_.load(); }
  size_t step_count() const { return scenario_.steps.size(); }
  bool done() const { return done_.load(); }
  // Blocks until `n` steps have been applied (or the run ended); false on timeout.
  bool wait_for_steps(size_t n, Duration timeout) const;
  bool wait(Duration timeout) const { return wait_for_steps(scenario_.steps.size(), timeout); }

 private:
  asio::awaitable<void> run(std::shared_ptr<ScenarioRun> self);
  void apply(const ScenarioStep& step);
  void finish();

  Simulator& simulator_;
  const Scenario scenario_;
  asio::steady_timer timer_;
  std::atomic<size_t> applied_{0};
  std::atomic<bool> done_{false};
  bool cancelled_ = false;
  mutable std::mutex mutex_;
  mutable std::condition_variable progress_;
};

}  // namespace netsim
