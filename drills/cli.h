// `tandemctl drill ...`: options, validation and the run, so tandemctl's main stays thin.
//
//   tandemctl drill --list
//   tandemctl drill NAME [--iterations N] [--report FILE] [--seed S]
//                        (--lab [--build-dir DIR | --bin-dir DIR --guest FILE] [--arbiter A] [--keep]
//                         | --control A.sock --peer-control B.sock [--netsim SOCK])
//
// Exit status: 0 every iteration passed; 1 an iteration failed (or the run stopped early);
// 2 usage error (unknown drill, missing or contradictory options, unreachable sockets);
// 130 interrupted (Ctrl-C: everything the lab started is stopped first).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace tandem::drills {

struct DrillCliOptions {
  bool list = false;
  std::string name;
  int iterations = 1;
  std::string report_file;
  uint64_t seed = 1;
  bool lab = false;
  std::string control, peer_control, netsim;
  std::string build_dir, bin_dir, guest, arbiter;
  bool keep = false;
  int fault_ms = 1500;
  int reprotect_timeout_s = 120;
};

// Adds the `drill` subcommand to `app`, writing into `options`.
CLI::App* add_drill_subcommand(CLI::App& app, DrillCliOptions& options);

// Runs what the options ask; text on `out`, errors on `err`; returns the exit status.
int run_drill_command(DrillCliOptions options, std::ostream& out, std::ostream& err);

}  // namespace tandem::drills
