// tandem: the standalone VM front end. `tandem run GUEST` boots a guest on the
// deterministic VMM with the console on stdio; `tandem record` writes an event log of a run
// and `tandem replay` re-executes one. This file is the command line only: the sessions
// themselves live in runner/ (runner/session.h).
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <string>

#include "runner/session.h"

namespace {

using namespace tandem::runner;

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_signal(int) { g_interrupted = 1; }

// GUEST and the firmware boot options (the rules between them: vmm::BootSpec::check).
void add_boot_options(CLI::App* cmd, tandem::vmm::BootSpec& boot) {
  cmd->add_option("GUEST", boot.guest, "Guest image: RISC-V ELF64 or raw binary loaded at 0x80000000, entered in M-mode");
  cmd->add_option("--bios", boot.bios,
                  "Firmware (e.g. OpenSBI fw_jump.bin): raw at 0x80000000 or ELF, entered in M-mode with "
                  "a0 = hart id, a1 = device tree; instead of GUEST");
  cmd->add_option("--kernel", boot.kernel,
                  "Kernel for the firmware to start: raw Linux Image at 0x80200000 or ELF (needs --bios)");
  cmd->add_option("--initrd", boot.initrd,
                  "Initial ramdisk, placed high in RAM below the device tree; /chosen linux,initrd-start/end "
                  "(needs --kernel)");
  cmd->add_option("--append", boot.append, "Kernel command line (/chosen bootargs; needs --kernel)");
}

// The options every subcommand shares: what to boot, RAM, disk, limit, end-of-run lines.
// A new machine option (a NIC, say) is one field in MachineOptions and one line here.
void add_machine_options(CLI::App* cmd, MachineOptions& m, const char* disk_help, const char* mem_help) {
  add_boot_options(cmd, m.boot);
  cmd->add_option("--mem", m.mem_mib, mem_help)->capture_default_str();
  cmd->add_option("--disk", m.disk, disk_help);
  cmd->add_option("--max-instructions", m.max_instructions,
                  "Stop when the icount reaches N (absolute, also after --restore); exit status 3");
  cmd->add_flag("--state-hash", m.state_hash, "Print the final machine state hash (XXH3-64) on stderr");
  cmd->add_option("--cpu", m.cpu,
                  "CPU engine: interp (the interpreter) or jit (the x86-64 translator, docs/translator.md); "
                  "run also takes check: both side by side, state hashes compared (no console input)")
      ->capture_default_str();
  cmd->add_option("--check-every", m.check_every, "With --cpu check: instructions between state hash comparisons")
      ->capture_default_str();
}

constexpr const char* kDiskHelp = "Attach FILE as a virtio-blk disk (writes go to the file)";

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("tandem");
  logger->set_pattern("tandem: %l: %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"tandem: a deterministic RV64 virtual machine (QEMU virt board) for lockstep pairs"};
  app.require_subcommand(1);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose, "Log diagnostics (info level) to stderr");

  RunOptions run;
  CLI::App* run_cmd = app.add_subcommand(
      "run",
      "Run a guest standalone, console on stdin/stdout. Exit status: the guest's (finisher), "
      "2 bad input, 3 instruction limit, 4 guest idle forever, 130 interrupted");
  add_machine_options(run_cmd, run.machine, kDiskHelp, "Guest RAM in MiB");
  run_cmd->add_option("--net", run.net,
                      "Attach a virtio-net NIC: 'user[,hostfwd=tcp:127.0.0.1:8080-:80]...' (libslirp NAT) or "
                      "'tap,ifname=NAME'; NIC options mac=, mtu=, link= (docs/networking.md)");
  run_cmd->add_flag("--stats", run.machine.stats, "Print 'instructions=N wall_s=S mips=M' on stderr at the end");
  run_cmd->add_option("--save", run.save_path, "Write a machine snapshot to FILE at --save-at");
  run_cmd->add_option("--save-at", run.save_at, "The icount N at which --save is taken; the run then continues");
  run_cmd->add_option("--restore", run.restore_path,
                      "Start from the snapshot FILE instead of booting GUEST (same --mem and --disk)");
  run_cmd->add_option("--poll-interval", run.poll_interval, "Instructions between console polls")
      ->capture_default_str();
  run_cmd->add_option("--console", run.console,
                      "Console: 'stdio' or 'tcp:127.0.0.1:PORT' (a TCP listener; one client at a time)")
      ->capture_default_str();
  run_cmd->add_option("--dump-dtb", run.dump_dtb,
                      "Write the device tree the guest would get to FILE and exit 0 without running "
                      "(like QEMU's -machine dumpdtb=FILE)");

  RecordOptions rec;
  CLI::App* record_cmd = app.add_subcommand(
      "record",
      "Run a guest like 'run' and write every non-deterministic input to an event log. Exit status "
      "as for run");
  add_machine_options(record_cmd, rec.machine, kDiskHelp, "Guest RAM in MiB");
  record_cmd->add_option("--log", rec.log_path, "Event log to write (created or truncated)")->required();
  record_cmd->add_option("--net", rec.net,
                         "Attach a virtio-net NIC as for run; received frames are logged (replay needs no network)");
  record_cmd->add_option("--console", rec.console, "Console: 'stdio' or 'tcp:127.0.0.1:PORT'")->capture_default_str();
  record_cmd->add_option("--poll-interval", rec.poll_interval, "Instructions between console polls")
      ->capture_default_str();
  record_cmd->add_option("--audit-interval", rec.audit_interval,
                         "Instructions between state-hash AUDIT records (0 = only at the end)")
      ->capture_default_str();
  record_cmd->add_option("--time", rec.time,
                         "Guest time: 'wall' (idle waits take real time, logged TIME_ADJUST keeps guest time near "
                         "wall time) or 'virtual' (icount only; idle waits skip at once)")
      ->capture_default_str();
  record_cmd->add_flag("--stats", rec.machine.stats, "Print records, log bytes and 'instructions=N wall_s=S mips=M' on stderr");

  ReplayOptions rep;
  CLI::App* replay_cmd = app.add_subcommand(
      "replay",
      "Re-execute a recorded run from its event log, reproducing its console output; never reads stdin "
      "or a host clock. Exit status: the recorded guest's, 0 at the end of a log without END (an "
      "interrupted recording), 2 bad log or input, 3 limit, 4 divergence, 130 interrupted");
  add_machine_options(replay_cmd, rep.machine, "A copy of the disk as it was when the recording began",
                      "Guest RAM in MiB (must match the recording)");
  replay_cmd->add_option("--log", rep.log_path, "Event log written by 'tandem record'")->required();
  replay_cmd->add_flag("--verify,!--no-verify", rep.verify,
                       "Check every AUDIT and OUTPUT_DIGEST record (default on); stop at the first divergence")
      ->capture_default_str();
  replay_cmd->add_flag("--stats", rep.machine.stats, "Print records applied, audits checked and speed on stderr");

  // CLI11 reports an unknown command as "a subcommand is required"; name it instead.
  const auto subcommands = app.get_subcommands([](const CLI::App*) { return true; });
  const bool known = argc > 1 && std::any_of(subcommands.begin(), subcommands.end(),
                                             [&](const CLI::App* s) { return s->check_name(argv[1]); });
  if (argc > 1 && argv[1][0] != '-' && !known) {
    std::fprintf(stderr, "tandem: error: unknown command '%s' (see --help)\n", argv[1]);
    return kStatusBadInput;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "tandem: error: %s (see --help)\n", e.what());
    return kStatusBadInput;
  }
  if (verbose) spdlog::set_level(spdlog::level::info);

  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    if (*run_cmd) return run_session(run, &g_interrupted);
    if (*record_cmd) return record_session(rec, &g_interrupted);
    if (*replay_cmd) return replay_session(rep, &g_interrupted);
  } catch (const BadInput& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return kStatusBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
