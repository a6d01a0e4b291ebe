#include "drills/cli.h"

#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "drills/drill.h"
#include "drills/external_pair.h"
#include "drills/lab.h"

namespace tandem::drills {

namespace fs = std::filesystem;

namespace {

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;
constexpr int kExitInterrupted = 130;

void on_stop_signal(int) { request_interrupt(); }

// tandemctl lives in BUILD/tools: its own directory holds the other tools.
std::string own_dir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

std::string drill_list() {
  std::string text = "drills:\n";
  for (const auto& d : all_drills()) {
    text += fmt::format("  {:<15} {}", d.name, d.summary);
    if (d.needs_netsim) text += " [netsim]";
    if (d.needs_witness) text += " [witness]";
    text += "\n";
  }
  return text;
}

void validate(DrillCliOptions& o) {
  if (o.list) return;
  if (o.name.empty()) throw UsageError("name a drill (or --list to see them)");
  const DrillInfo* drill = find_drill(o.name);
  if (!drill) throw UsageError(fmt::format("unknown drill \"{}\"\n{}", o.name, drill_list()));
  const bool external = !o.control.empty() || !o.peer_control.empty();
  if (o.lab && external) throw UsageError("--lab starts its own pair; it cannot be used with --control/--peer-control");
  if (!o.lab && !external)
    throw UsageError("give --lab (a throwaway pair) or --control A.sock --peer-control B.sock (an existing pair)");
  if (external && (o.control.empty() || o.peer_control.empty()))
    throw UsageError("an existing pair needs both --control and --peer-control");
  if (external && o.control == o.peer_control) throw UsageError("--control and --peer-control name the same socket");
  if (o.lab && !o.netsim.empty()) throw UsageError("--netsim is for an existing pair; --lab runs its own");
  if (external && drill->needs_netsim && o.netsim.empty())
    throw UsageError(fmt::format("{}: needs --netsim SOCK (the netsim proxy on the pair's links)", o.name));
  if (external && drill->needs_witness && o.name == "lose-witness")
    throw UsageError("lose-witness: the drill must own the witness process; use --lab");
  if (o.lab) {
    if (o.build_dir.empty()) o.build_dir = (fs::path(own_dir()) / "..").lexically_normal().string();
    if (o.bin_dir.empty()) o.bin_dir = (fs::path(o.build_dir) / "tools").string();
    if (o.guest.empty()) o.guest = (fs::path(o.build_dir) / "guest" / "kv.elf").string();
  }
}

}  // namespace

CLI::App* add_drill_subcommand(CLI::App& app, DrillCliOptions& o) {
  auto* cmd = app.add_subcommand("drill",
                                 "Failover drill: inject a fault into a protected pair while a checking kv client "
                                 "works; report failover time, lost acknowledged writes and dual primaries.\n"
                                 "Exit status: 0 all iterations passed, 1 a failure, 2 usage error, 130 interrupted.");
  cmd->add_flag("--list", o.list, "List the drills and what each one does");
  cmd->add_option("NAME", o.name, "kill-primary | freeze-primary | freeze-secondary | partition-link | partition-all | lose-witness | "
                                  "flapping-link | slow-link");
  cmd->add_option("-n,--iterations", o.iterations, "Iterations (the pair is re-protected between them)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--report", o.report_file, "Write a JSON report (per iteration and totals) to FILE");
  cmd->add_option("--seed", o.seed, "Seed of the client's choices and of netsim's randomness")->capture_default_str();
  cmd->add_flag("--lab", o.lab,
                "Start a throwaway pair on 127.0.0.1 (witness, netsim proxies, two tandemd with the kv guest) in a "
                "temp dir, and stop all of it at the end");
  cmd->add_option("--control", o.control, "An existing pair: one node's control socket");
  cmd->add_option("--peer-control", o.peer_control, "An existing pair: the other node's control socket");
  cmd->add_option("--netsim", o.netsim,
                  "An existing pair: the control socket of the tandem-netsim in front of its links (links named "
                  "repl, hb2, witness-p as in netsim/examples/links.toml)");
  cmd->add_option("--build-dir", o.build_dir, "--lab: the build tree (default: the one this tandemctl is in)");
  cmd->add_option("--bin-dir", o.bin_dir, "--lab: where tandemd, tandem-netsim, tandem-witness are (default BUILD/tools)");
  cmd->add_option("--guest", o.guest, "--lab: the kv guest (default BUILD/guest/kv.elf)");
  cmd->add_option("--arbiter", o.arbiter,
                  "--lab: witness or none (default: witness when the build has tandem-witness)");
  cmd->add_flag("--keep", o.keep, "--lab: keep the temp dir (configs, logs) and print its path");
  cmd->add_option("--fault-ms", o.fault_ms, "How long a partition, flapping, slow link or lost witness lasts")
      ->check(CLI::Range(100, 600000))
      ->capture_default_str();
  cmd->add_option("--reprotect-timeout", o.reprotect_timeout_s,
                  "An existing pair: seconds to wait for it to be PROTECTED again between iterations")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  return cmd;
}

int run_drill_command(DrillCliOptions o, std::ostream& out, std::ostream& err) {
  try {
    validate(o);
  } catch (const UsageError& e) {
    err << "tandemctl drill: " << e.what() << "\n";
    return kExitUsage;
  }
  if (o.list) {
    out << drill_list();
    return 0;
  }
  const DrillInfo& drill = *find_drill(o.name);

  // Ctrl-C ends the run through the drill's own checks, so the lab is torn down in order.
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  struct sigaction old_int {}, old_term {};
  ::sigaction(SIGINT, &action, &old_int);
  ::sigaction(SIGTERM, &action, &old_term);
  struct Restore {
    struct sigaction i, t;
    ~Restore() {
      ::sigaction(SIGINT, &i, nullptr);
      ::sigaction(SIGTERM, &t, nullptr);
    }
  } restore{old_int, old_term};
  ::signal(SIGPIPE, SIG_IGN);

  DrillTiming timing;
  timing.fault = std::chrono::milliseconds(o.fault_ms);
  DrillReport report;
  try {
    std::unique_ptr<PairEnv> env;
    if (o.lab) {
      LabOptions lab_options;
      lab_options.bin_dir = o.bin_dir;
      lab_options.guest = o.guest;
      lab_options.arbiter = o.arbiter;
      lab_options.seed = o.seed;
      lab_options.keep = o.keep;
      auto lab = std::make_unique<Lab>(lab_options);
      if (drill.needs_witness && !lab->has_witness())
        throw UsageError(fmt::format("{}: needs a witness; this lab runs arbiter \"{}\" (it needs tandem-witness and a tandemd with [fencing] in {})",
                                     o.name, lab->arbiter(), o.bin_dir));
      out << fmt::format("{}: {}\n", o.name, lab->describe()) << std::flush;
      lab->start_pair();
      env = std::move(lab);
    } else {
      env = std::make_unique<ExternalPair>(o.control, o.peer_control, o.netsim,
                                           std::chrono::seconds(o.reprotect_timeout_s));
      out << fmt::format("{}: {}\n", o.name, env->describe()) << std::flush;
    }
    report = run_drill(*env, drill, o.iterations, o.seed, timing, [&](const IterationResult& r) {
      out << format_iteration(o.name, o.iterations, r) << "\n" << std::flush;
    });
    if (o.keep && o.lab) out << fmt::format("kept {}\n", static_cast<Lab&>(*env).dir());
  } catch (const UsageError& e) {
    err << "tandemctl drill: " << e.what() << "\n";
    return kExitUsage;
  } catch (const Interrupted&) {
    report.drill = o.name;
    report.aborted = "interrupted";
  } catch (const std::exception& e) {
    report.drill = o.name;
    report.aborted = e.what();
  }
  if (report.drill.empty()) report.drill = o.name;
  out << format_summary(report) << "\n";
  if (!o.report_file.empty()) {
    std::ofstream file(o.report_file, std::ios::trunc);
    file << report_to_json(report).dump(2) << "\n";
    if (!file) {
      err << fmt::format("tandemctl drill: cannot write the report to {}\n", o.report_file);
      return kExitFailed;
    }
  }
  if (interrupt_requested()) return kExitInterrupted;
  return report.passed() ? 0 : kExitFailed;
}

}  // namespace tandem::drills
