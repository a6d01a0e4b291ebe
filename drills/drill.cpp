#include "drills/drill.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

#include "drills/monitor.h"
#include "drills/workload.h"

namespace tandem::drills {

using nlohmann::json;
using std::chrono::milliseconds;

const std::vector<DrillInfo>& all_drills() {
  static const std::vector<DrillInfo> drills = {
      {"kill-primary", "kill -9 of the primary: the secondary takes over, no acknowledged write is lost", false, false,
       Expect::Failover},
      {"freeze-primary",
       "SIGSTOP of the primary, SIGCONT once the secondary is live: the thawed old primary must be fenced", false,
       false, Expect::Failover},
      {"freeze-secondary",
       "SIGSTOP of the secondary (a host dead without a TCP reset): the primary advances the epoch at the arbiter "
       "and serves on alone (no failover); the thawed secondary is refused and waits as a STANDBY",
       false, false, Expect::NoFailover},
      {"partition-link",
       "the replication link partitioned both ways (netsim): the second heartbeat path keeps the secondary from "
       "promoting (no failover)",
       true, false, Expect::NoFailover},
      {"partition-all",
       "the primary cut from the secondary on the link and the second heartbeat path and from the witness (netsim); the "
       "secondary still reaches the witness: failover, the old primary fences itself",
       true, true, Expect::Failover},
      {"lose-witness", "the witness killed, then restarted: the pair keeps running, no promotion", false, true,
       Expect::NoFailover},
      {"flapping-link", "the replication link flapping up and down (netsim): nothing lost, never two primaries", true,
       false, Expect::Either},
      {"slow-link", "delay, jitter and a bandwidth cap on the replication link (netsim): nothing lost", true, false,
       Expect::Either},
  };
  return drills;
}

const DrillInfo* find_drill(const std::string& name) {
  for (const auto& d : all_drills())
    if (d.name == name) return &d;
  return nullptr;
}

bool DrillReport::passed() const {
  if (!aborted.empty() || iterations.empty()) return false;
  return std::all_of(iterations.begin(), iterations.end(), [](const IterationResult& r) { return r.passed; });
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = std::ceil(p / 100.0 * static_cast<double>(values.size()));
  const size_t index = rank < 1 ? 0 : std::min(values.size() - 1, static_cast<size_t>(rank) - 1);
  return values[index];
}

namespace {

double ms_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

struct Roles {
  int primary = -1;
  uint64_t epoch = 0;
};

// The live primary of a PROTECTED pair (the drill starts only from there).
Roles current_roles(PairEnv& env) {
  for (int slot = 0; slot < 2; ++slot) {
    const auto mine = node_status(env.control_socket(slot), 2000);
    const auto other = node_status(env.control_socket(1 - slot), 2000);
    if (mine && other && is_protected_pair(*mine, *other)) return {slot, mine->value("epoch", uint64_t{0})};
  }
  throw std::runtime_error("the pair is not PROTECTED (one primary, one synced secondary)");
}

json netsim_request(PairEnv& env, const json& request) {
  const json reply = drills::netsim_request(env.netsim_socket(), request, std::chrono::seconds(5));
  if (!reply.value("ok", false))
    throw std::runtime_error(
        fmt::format("netsim {}: {}", request.dump(), reply.value("error", std::string("request failed"))));
  return reply;
}

void partition(PairEnv& env, const std::vector<std::string>& links) {
  netsim_request(env, {{"cmd", "partition"}, {"name", "drill"}, {"links", links}, {"direction", "both"}});
}

void heal(PairEnv& env) { netsim_request(env, {{"cmd", "heal"}, {"name", "drill"}}); }

void set_fault(PairEnv& env, const std::string& link, const std::string& fault, const json& params) {
  netsim_request(env, {{"cmd", "set"}, {"link", link}, {"fault", fault}, {"direction", "both"}, {"params", params}});
}

void clear_faults(PairEnv& env, const std::vector<std::string>& links) {
  for (const auto& link : links) netsim_request(env, {{"cmd", "clear"}, {"link", link}});
}

// The first reply to the client from `slot` at or after `after` (abandoned connections
// excluded: those are late output, not service).
std::optional<Clock::time_point> first_reply(const std::vector<ReplyEvent>& replies, int slot, Clock::time_point after) {
  for (const auto& r : replies)
    if (!r.abandoned && r.slot == slot && r.at >= after) return r.at;
  return std::nullopt;
}

std::optional<Clock::time_point> first_reply_any(const std::vector<ReplyEvent>& replies, Clock::time_point after) {
  for (const auto& r : replies)
    if (!r.abandoned && r.at >= after) return r.at;
  return std::nullopt;
}

// Waits until the client got a reply from `slot` after `after` (any slot when slot < 0).
std::optional<Clock::time_point> wait_reply(const KvWorkload& workload, int slot, Clock::time_point after,
                                            milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    const auto replies = workload.replies();
    const auto found = slot < 0 ? first_reply_any(replies, after) : first_reply(replies, slot, after);
    if (found) return found;
    if (Clock::now() >= deadline) return std::nullopt;
    sleep_interruptible(milliseconds(10));
  }
}

// Sends a read to the thawed/isolated old primary on a fresh connection: it must not answer.
bool old_primary_answers(const Endpoint& console, milliseconds wait) {
  KvConnection probe;
  if (!probe.connect(console, milliseconds(300))) return false;
  if (!probe.send_line("COUNT")) return false;
  return probe.read_line(wait).has_value();
}

}  // namespace

static IterationResult run_iteration(PairEnv& env, const DrillInfo& drill, int iteration, uint64_t seed,
                                     const DrillTiming& timing) {
  IterationResult result;
  result.iteration = iteration;
  const Roles roles = current_roles(env);
  const int primary = roles.primary;
  const int secondary = 1 - primary;
  result.epoch_before = roles.epoch;

  StatusMonitor monitor({env.control_socket(0), env.control_socket(1)}, milliseconds(20));
  WorkloadOptions wopts;
  wopts.key_prefix = fmt::format("{}-{}-", seed % 100000, iteration);
  wopts.seed = seed * 1000003 + static_cast<uint64_t>(iteration);
  wopts.op_interval = timing.op_interval;
  KvWorkload workload({env.console(0), env.console(1)}, primary, wopts);
  workload.start();

  // Service first: a drill on a pair that does not answer measures nothing.
  const auto warm_deadline = Clock::now() + std::chrono::seconds(20);
  while (workload.acked() < 20) {
    if (Clock::now() >= warm_deadline) throw std::runtime_error("the primary acknowledged no writes before the fault");
    sleep_interruptible(milliseconds(10));
  }

  const LinkSet links = env.links(primary);
  const auto fault_at = Clock::now();
  Clock::time_point fault_end = fault_at;
  std::optional<Clock::time_point> new_primary_reply;
  uint64_t probe_answers = 0;
  auto await_failover = [&] {
    new_primary_reply = wait_reply(workload, secondary, fault_at, timing.failover_timeout);
    if (!new_primary_reply)
      result.problems.push_back(
          fmt::format("no reply from the secondary within {} ms of the fault", timing.failover_timeout.count()));
  };

  if (drill.name == "kill-primary") {
    env.kill9(primary);
    await_failover();
    fault_end = Clock::now();
  } else if (drill.name == "freeze-primary") {
    env.freeze(primary);
    await_failover();
    env.thaw(primary);
    fault_end = Clock::now();
    sleep_interruptible(milliseconds(100));
    if (new_primary_reply && old_primary_answers(env.console(primary), timing.settle)) ++probe_answers;
  } else if (drill.name == "freeze-secondary") {
    env.freeze(secondary);
    // The primary answers again only once it moved its epoch past the frozen replica.
    const auto deadline = Clock::now() + timing.failover_timeout;
    bool advanced = false;
    while (!advanced && Clock::now() < deadline) {
      const auto s = node_status(env.control_socket(primary), 500);
      advanced = s && s->value("state", std::string()) == "STANDALONE" && s->value("epoch", uint64_t{0}) > roles.epoch;
      if (!advanced) sleep_interruptible(milliseconds(20));
    }
    if (!advanced) result.problems.push_back("the primary did not go STANDALONE under a higher epoch");
    else if (!wait_reply(workload, primary, Clock::now(), timing.failover_timeout))
      result.problems.push_back("the primary did not answer after advancing its epoch");
    env.thaw(secondary);
    fault_end = Clock::now();
    sleep_interruptible(timing.settle);
    // The thawed secondary must not serve: it has no console, or one that stays silent.
    if (old_primary_answers(env.console(secondary), timing.settle)) ++probe_answers;
  } else if (drill.name == "partition-link") {
    partition(env, links.replication);
    sleep_interruptible(timing.fault);
    heal(env);
    fault_end = Clock::now();
  } else if (drill.name == "partition-all") {
    std::vector<std::string> cut = links.replication;
    cut.insert(cut.end(), links.heartbeat.begin(), links.heartbeat.end());
    cut.insert(cut.end(), links.primary_witness.begin(), links.primary_witness.end());
    partition(env, cut);
    await_failover();
    // The old primary is still running, cut off: it must already be silent.
    if (new_primary_reply && old_primary_answers(env.console(primary), timing.settle)) ++probe_answers;
    heal(env);
    fault_end = Clock::now();
  } else if (drill.name == "lose-witness") {
    env.kill_witness();
    sleep_interruptible(timing.fault);
    env.restart_witness();
    fault_end = Clock::now();
  } else if (drill.name == "flapping-link") {
    for (const auto& link : links.replication) set_fault(env, link, "flap", {{"on", "150ms"}, {"off", "250ms"}});
    sleep_interruptible(timing.fault);
    clear_faults(env, links.replication);
    fault_end = Clock::now();
  } else if (drill.name == "slow-link") {
    for (const auto& link : links.replication) {
      set_fault(env, link, "delay", {{"delay", "20ms"}, {"jitter", "5ms"}});
      set_fault(env, link, "bandwidth", {{"rate", "2MB"}});
    }
    sleep_interruptible(timing.fault);
    clear_faults(env, links.replication);
    fault_end = Clock::now();
  } else {
    throw std::logic_error("unknown drill " + drill.name);
  }

  // After the fault: service must come back (from whoever is primary now), and late
  // output from an abandoned node is still watched for a while.
  if (!wait_reply(workload, -1, fault_end, timing.failover_timeout))
    result.problems.push_back(fmt::format("no service within {} ms after the fault ended", timing.failover_timeout.count()));
  sleep_interruptible(timing.settle);
  workload.stop();
  const auto stopped_at = Clock::now();
  workload.drain_abandoned(milliseconds(200));
  const std::string sweep = workload.final_sweep(timing.failover_timeout);
  if (!sweep.empty()) result.problems.push_back(sweep);
  monitor.stop();

  // ---- measure ----
  const auto replies = workload.replies();
  const auto spans = monitor.spans();
  result.status_polls = monitor.polls();
  for (const auto& span : spans)
    if (span.slot == secondary && span.epoch > result.epoch_before) result.promoted = true;
  result.epoch_after = result.epoch_before;
  for (const auto& span : spans) result.epoch_after = std::max(result.epoch_after, span.epoch);
  if (!new_primary_reply && result.promoted) new_primary_reply = first_reply(replies, secondary, fault_at);
  if (new_primary_reply && (drill.expect != Expect::NoFailover || result.promoted))
    result.failover_ms = ms_between(fault_at, *new_primary_reply);

  // Longest stretch without a reply, from the last reply before the fault to the end.
  {
    std::vector<Clock::time_point> times;
    Clock::time_point last_before = fault_at;
    for (const auto& r : replies) {
      if (r.abandoned) continue;
      if (r.at < fault_at) last_before = r.at;
      else if (r.at <= stopped_at) times.push_back(r.at);
    }
    Clock::time_point previous = last_before;
    double longest = 0;
    for (auto t : times) {
      longest = std::max(longest, ms_between(previous, t));
      previous = t;
    }
    longest = std::max(longest, ms_between(previous, stopped_at));
    result.unavailable_ms = longest;
  }

  // Dual primaries: overlapping live spans, and any reply from the old primary once the
  // new one was live (the earlier of its first status as live and its first reply).
  std::set<uint64_t> dual_epochs;
  for (const auto& d : find_dual_primaries(spans)) {
    dual_epochs.insert(d.epoch);
    result.problems.push_back("dual primary: " + d.why);
  }
  std::optional<Clock::time_point> new_live = monitor.first_live(secondary, result.epoch_before);
  if (const auto r = first_reply(replies, secondary, fault_at); r && result.promoted && (!new_live || *r < *new_live))
    new_live = r;
  if (new_live) {
    // A reply on a connection the client had already given up on answers a request sent
    // before that: the old primary may have released it (acknowledged, so it is in the new
    // primary's history too) just before it froze or was cut off, and it arrives late.
    // Output released after the promotion cannot be acknowledged any more, so the evidence
    // of two primaries is an answer on a live connection, or to the fresh probe.
    for (const auto& r : replies)
      if (r.slot == primary && r.at > *new_live && !r.abandoned) ++result.stale_replies;
    result.stale_replies += probe_answers;
    if (result.stale_replies > 0) {
      dual_epochs.insert(result.epoch_before);
      result.problems.push_back(fmt::format("{} repl{} from the old primary after the new one went live",
                                            result.stale_replies, result.stale_replies == 1 ? "y" : "ies"));
    }
  }
  if (!new_live && probe_answers > 0) {  // freeze-secondary: a node that never went live answered
    result.stale_replies += probe_answers;
    dual_epochs.insert(result.epoch_before);
    result.problems.push_back("the thawed secondary answered a client");
  }
  result.dual_primary_epochs = dual_epochs.size();

  const SetFullCounts c = workload.counts();
  result.attempted = c.attempted;
  result.acked = c.acked;
  result.indeterminate = c.indeterminate;
  result.indeterminate_present = c.indeterminate_present;
  result.duplicate_acks = c.duplicate_acks;
  result.reads = c.reads;
  result.acked_lost = c.acked_lost;
  result.phantoms = c.phantoms;
  result.unexpected = workload.unexpected();
  for (const auto& p : workload.problems()) result.problems.push_back(p);

  if (drill.expect == Expect::Failover && !result.promoted)
    result.problems.push_back("expected a failover: the secondary never went live as primary");
  if (drill.expect == Expect::NoFailover && result.promoted)
    result.problems.push_back(fmt::format("expected no failover: the secondary went live (epoch {} -> {})",
                                          result.epoch_before, result.epoch_after));
  result.passed = result.problems.empty() && result.acked_lost == 0 && result.phantoms == 0 &&
                  result.dual_primary_epochs == 0 && result.unexpected == 0;
  return result;
}

DrillReport run_drill(PairEnv& env, const DrillInfo& drill, int iterations, uint64_t seed, const DrillTiming& timing,
                      const std::function<void(const IterationResult&)>& progress) {
  DrillReport report;
  report.drill = drill.name;
  report.target = env.describe();
  report.seed = seed;
  for (int i = 1; i <= iterations; ++i) {
    try {
      if (i > 1) env.reprotect();
      IterationResult r = run_iteration(env, drill, i, seed, timing);
      env.cleanup_faults();
      report.iterations.push_back(r);
      if (progress) progress(r);
    } catch (const Interrupted&) {
      env.cleanup_faults();
      report.aborted = fmt::format("interrupted in iteration {}", i);
      break;
    } catch (const std::exception& e) {
      env.cleanup_faults();
      report.aborted = fmt::format("iteration {}: {}", i, e.what());
      break;
    }
  }
  return report;
}

namespace {

nlohmann::ordered_json iteration_json(const IterationResult& r) {
  return {
      {"iteration", r.iteration},
      {"passed", r.passed},
      {"promoted", r.promoted},
      {"failover_ms",
       r.failover_ms ? nlohmann::ordered_json(std::round(*r.failover_ms * 10) / 10) : nlohmann::ordered_json(nullptr)},
      {"unavailable_ms", std::round(r.unavailable_ms * 10) / 10},
      {"epoch_before", r.epoch_before},
      {"epoch_after", r.epoch_after},
      {"writes_attempted", r.attempted},
      {"writes_acked", r.acked},
      {"writes_indeterminate", r.indeterminate},
      {"writes_indeterminate_present", r.indeterminate_present},
      {"duplicate_acks", r.duplicate_acks},
      {"reads", r.reads},
      {"acked_lost", r.acked_lost},
      {"phantoms", r.phantoms},
      {"unexpected_replies", r.unexpected},
      {"dual_primary_epochs", r.dual_primary_epochs},
      {"stale_replies", r.stale_replies},
      {"status_polls", r.status_polls},
      {"problems", r.problems},
  };
}

nlohmann::ordered_json distribution(const std::vector<double>& values) {
  if (values.empty()) return nullptr;
  auto round1 = [](double v) { return std::round(v * 10) / 10; };
  return {{"count", values.size()},
          {"p50", round1(percentile(values, 50))},
          {"p99", round1(percentile(values, 99))},
          {"max", round1(*std::max_element(values.begin(), values.end()))}};
}

}  // namespace

nlohmann::ordered_json report_to_json(const DrillReport& report) {
  using ojson = nlohmann::ordered_json;
  ojson iterations = ojson::array();
  uint64_t lost = 0, dual = 0, phantoms = 0, attempted = 0, acked = 0, stale = 0, passed = 0;
  std::vector<double> failovers, unavailable;
  for (const auto& r : report.iterations) {
    iterations.push_back(iteration_json(r));
    lost += r.acked_lost;
    dual += r.dual_primary_epochs;
    phantoms += r.phantoms;
    attempted += r.attempted;
    acked += r.acked;
    stale += r.stale_replies;
    passed += r.passed ? 1 : 0;
    if (r.failover_ms) failovers.push_back(*r.failover_ms);
    unavailable.push_back(r.unavailable_ms);
  }
  return {
      {"drill", report.drill},
      {"target", report.target},
      {"seed", report.seed},
      {"iterations", iterations},
      {"totals",
       {{"iterations", report.iterations.size()},
        {"iterations_passed", passed},
        {"passed", report.passed()},
        {"aborted", report.aborted.empty() ? ojson(nullptr) : ojson(report.aborted)},
        {"acked_lost", lost},
        {"dual_primary_epochs", dual},
        {"phantoms", phantoms},
        {"stale_replies", stale},
        {"writes_attempted", attempted},
        {"writes_acked", acked},
        {"failover_ms", distribution(failovers)},
        {"unavailable_ms", distribution(unavailable)}}},
  };
}

std::string format_iteration(const std::string& drill, int iterations, const IterationResult& r) {
  std::string line = fmt::format(
      "{} {}/{}: {}  failover {}  unavailable {:.0f} ms  writes {} acked / {} in doubt  acked_lost {}  phantoms {}  "
      "dual_primary_epochs {}  epoch {} -> {}",
      drill, r.iteration, iterations, r.passed ? "PASS" : "FAIL",
      r.failover_ms ? fmt::format("{:.0f} ms", *r.failover_ms) : std::string("none"), r.unavailable_ms, r.acked,
      r.indeterminate, r.acked_lost, r.phantoms, r.dual_primary_epochs, r.epoch_before, r.epoch_after);
  for (const auto& p : r.problems) line += "\n    " + p;
  return line;
}

std::string format_summary(const DrillReport& report) {
  const auto totals = report_to_json(report)["totals"];
  auto dist = [](const nlohmann::ordered_json& d) {
    return d.is_null() ? std::string("none")
                       : fmt::format("p50 {:.0f} ms, max {:.0f} ms", d["p50"].get<double>(), d["max"].get<double>());
  };
  std::string text = fmt::format(
      "{}: {} ({}/{} iterations passed)  failover {}  unavailable {}  acked_lost {}  dual_primary_epochs {}  "
      "phantoms {}  writes acked {}",
      report.drill, report.passed() ? "PASS" : "FAIL", totals["iterations_passed"].get<uint64_t>(),
      report.iterations.size(), dist(totals["failover_ms"]), dist(totals["unavailable_ms"]),
      totals["acked_lost"].get<uint64_t>(), totals["dual_primary_epochs"].get<uint64_t>(),
      totals["phantoms"].get<uint64_t>(), totals["writes_acked"].get<uint64_t>());
  if (!report.aborted.empty()) text += "\n  aborted: " + report.aborted;
  return text;
}

}  // namespace tandem::drills
