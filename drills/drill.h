// Failover drills: inject one fault into a protected pair while a checking client works,
// and measure what the client saw. `tandemctl drill NAME` is the front end (cli.h).
//
//   kill-primary    kill -9 of the primary: the secondary must take over, nothing acked lost
//   freeze-primary  SIGSTOP of the primary until the secondary is live, then SIGCONT: the
//                   thawed old primary must be fenced (never answer a client again)
//   freeze-secondary SIGSTOP of the secondary (dead without a TCP reset): the primary advances
//                   the epoch and serves alone, the thawed secondary is refused (STANDBY)
//   partition-link  the replication link cut both ways (netsim): the second heartbeat path
//                   still says the primary is up, so NO failover
//   partition-all   the primary cut from the secondary on every path and from the witness
//                   (netsim); the secondary still reaches the witness: failover, and the
//                   isolated old primary must fence itself
//   lose-witness    the witness killed, then restarted: the pair keeps running, no promotion
//   flapping-link   the replication link flapping (netsim): no loss, no dual primary
//   slow-link       delay, jitter and a bandwidth cap on the replication link (netsim)
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "drills/pair_env.h"

namespace tandem::drills {

enum class Expect { Failover, NoFailover, Either };

struct DrillInfo {
  std::string name;
  std::string summary;
  bool needs_netsim = false;
  bool needs_witness = false;
  Expect expect = Expect::Either;
};

const std::vector<DrillInfo>& all_drills();
const DrillInfo* find_drill(const std::string& name);

struct DrillTiming {
  std::chrono::milliseconds fault{1500};       // how long a partition/flap/slow link/lost witness lasts
  std::chrono::milliseconds failover_timeout{30000};
  std::chrono::milliseconds settle{800};       // after the fault: the client keeps going, late output is watched
  std::chrono::milliseconds op_interval{5};
};

struct IterationResult {
  int iteration = 0;
  bool passed = false;
  bool promoted = false;                     // the secondary went live in a newer epoch
  std::optional<double> failover_ms;         // fault → first reply from the new primary
  double unavailable_ms = 0;                 // longest time without any reply around the fault
  uint64_t epoch_before = 0, epoch_after = 0;
  uint64_t attempted = 0, acked = 0, indeterminate = 0, indeterminate_present = 0, duplicate_acks = 0, reads = 0;
  uint64_t acked_lost = 0, phantoms = 0, unexpected = 0;
  uint64_t dual_primary_epochs = 0;          // distinct epochs with two nodes releasing output
  uint64_t stale_replies = 0;                // replies from the old primary after the new one went live
  uint64_t status_polls = 0;
  std::vector<std::string> problems;         // why it failed (and notable facts)
};

struct DrillReport {
  std::string drill;
  std::string target;
  uint64_t seed = 0;
  std::vector<IterationResult> iterations;
  std::string aborted;  // non-empty: the run stopped early (lab failure, Ctrl-C)
  bool passed() const;
};

// Runs `iterations` of the drill on `env`; `progress` gets one line per iteration as it ends.
DrillReport run_drill(PairEnv& env, const DrillInfo& drill, int iterations, uint64_t seed, const DrillTiming& timing,
                      const std::function<void(const IterationResult&)>& progress);

nlohmann::ordered_json report_to_json(const DrillReport& report);  // keys in a reading order
std::string format_iteration(const std::string& drill, int iterations, const IterationResult& result);
std::string format_summary(const DrillReport& report);

// p-th percentile (0..100) by nearest rank; 0 for an empty list.
double percentile(std::vector<double> values, double p);

}  // namespace tandem::drills
