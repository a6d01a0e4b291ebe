// tandem: the standalone VM front end. `tandem run GUEST` boots a guest on the
// deterministic VMM with the console on stdio. Further subcommands (record, replay) hang
// off the same App.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>

#include "vmm-hooks/live.h"
#include "vmm-hooks/stdio_console.h"
#include "vmm/devices/disk_image.h"
#include "vmm/loader.h"
#include "vmm/machine.h"

namespace {

using tandem::vmm::Exit;

// Exit statuses of `tandem run` (also in README).
constexpr int kStatusBadInput = 2;     // bad command line, image, disk or snapshot
constexpr int kStatusLimit = 3;        // --max-instructions reached
constexpr int kStatusIdle = 4;         // the guest waits for input that can never come
constexpr int kStatusInterrupted = 130;

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_signal(int) { g_interrupted = 1; }

struct RunOptions {
  std::string guest;
  uint64_t mem_mib = tandem::vmm::kDefaultMemBytes >> 20;
  std::string disk;
  std::optional<uint64_t> max_instructions;
  bool stats = false;
  bool state_hash = false;
  std::string save_path;
  std::optional<uint64_t> save_at;
  std::string restore_path;
  uint64_t poll_interval = 1u << 20;
};

class BadInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The Live world, stopped by SIGINT/SIGTERM at its next service or idle wait.
class InterruptibleLive : public tandem::hooks::Live {
 public:
  using Live::Live;
  struct Interrupted {};
  void service(tandem::vmm::Machine& m) override {
    if (g_interrupted) throw Interrupted{};
    Live::service(m);
  }
  bool idle(tandem::vmm::Machine& m, uint64_t deadline) override {
    if (g_interrupted) throw Interrupted{};
    const bool woke = Live::idle(m, deadline);
    if (g_interrupted) throw Interrupted{};  // the wait was cut short by the signal
    return woke;
  }
};

void write_snapshot(const tandem::vmm::Machine& machine, const std::string& path) {
  // Write beside the target and rename, so a crash never leaves a half snapshot at `path`.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw BadInput("cannot create snapshot " + tmp);
    machine.save(out);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw BadInput("cannot rename snapshot to " + path + ": " + ec.message());
}

int guest_status(const tandem::vmm::RunResult& r) {
  switch (r.exit) {
    case Exit::GuestPass:
    case Exit::Reset:
      return 0;
    case Exit::GuestFail:
      // A failure must never look like success, even when the code is 0 mod 256.
      return (r.code & 0xff) != 0 ? static_cast<int>(r.code & 0xff) : 1;
    case Exit::Idle:
      return kStatusIdle;
    case Exit::Running:
      return kStatusLimit;
  }
  return 1;
}

int run_command(const RunOptions& opt) {
  if (opt.guest.empty() && opt.restore_path.empty()) throw BadInput("GUEST is required (or --restore FILE)");
  if (opt.save_path.empty() != !opt.save_at.has_value()) throw BadInput("--save and --save-at go together");
  if (opt.mem_mib == 0 || opt.mem_mib > 65536) throw BadInput("--mem must be 1..65536 MiB");
  if (opt.poll_interval == 0) throw BadInput("--poll-interval must be > 0");
  if (opt.save_at && opt.max_instructions && *opt.save_at > *opt.max_instructions) {
    throw BadInput("--save-at is past --max-instructions: the snapshot would never be taken");
  }
  if (!opt.restore_path.empty() && !opt.guest.empty()) {
    spdlog::warn("GUEST {} is ignored: the machine comes from --restore {}", opt.guest, opt.restore_path);
  }

  tandem::vmm::MachineConfig config;
  config.mem_bytes = opt.mem_mib << 20;
  config.disk_path = opt.disk;

  tandem::hooks::StdioConsole console;
  InterruptibleLive live(console, {.poll_interval = opt.poll_interval,
                                   .interactive = ::isatty(STDIN_FILENO) != 0,
                                   .interrupted = &g_interrupted});
  std::optional<tandem::vmm::Machine> machine;
  try {
    machine.emplace(config, live);
    if (!opt.restore_path.empty()) {
      std::ifstream in(opt.restore_path, std::ios::binary);
      if (!in) throw BadInput("cannot open snapshot " + opt.restore_path);
      machine->restore(in);
      spdlog::debug("restored {} at icount {}", opt.restore_path, machine->icount());
    } else {
      machine->load(opt.guest);
    }
  } catch (const tandem::vmm::LoadError& e) {
    throw BadInput(e.what());
  } catch (const tandem::vmm::DiskError& e) {
    throw BadInput(e.what());
  } catch (const tandem::vmm::StateError& e) {
    throw BadInput(opt.restore_path + ": " + e.what());
  }

  const uint64_t limit = opt.max_instructions.value_or(UINT64_MAX);
  const uint64_t start_icount = machine->icount();
  const auto start = std::chrono::steady_clock::now();
  tandem::vmm::RunResult result;
  try {
    if (opt.save_at) {
      if (*opt.save_at < start_icount) {
        throw BadInput("--save-at " + std::to_string(*opt.save_at) + " is before the start icount " +
                       std::to_string(start_icount));
      }
      result = machine->run_until(std::min(*opt.save_at, limit));
      if (result.exit == Exit::Running && result.icount == *opt.save_at) {
        write_snapshot(*machine, opt.save_path);
        spdlog::info("saved {} at icount {}", opt.save_path, result.icount);
      } else if (result.exit != Exit::Running) {
        spdlog::warn("guest ended at icount {} before --save-at {}; no snapshot written", result.icount,
                     *opt.save_at);
      }
    }
    if (result.exit == Exit::Running) result = machine->run_until(limit);
  } catch (const InterruptibleLive::Interrupted&) {
    live.flush();
    spdlog::warn("interrupted at icount {}", machine->icount());
    return kStatusInterrupted;
  }
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  live.flush();

  switch (result.exit) {
    case Exit::Running:
      std::fprintf(stderr, "tandem: stopped at the instruction limit (icount %llu)\n",
                   static_cast<unsigned long long>(result.icount));
      break;
    case Exit::Idle:
      std::fprintf(stderr,
                   "tandem: guest is idle with no timer armed and no console input left; stopped at icount %llu\n",
                   static_cast<unsigned long long>(result.icount));
      break;
    case Exit::GuestFail:
      std::fprintf(stderr, "tandem: guest reported failure code %u\n", result.code);
      break;
    case Exit::Reset:
      std::fprintf(stderr, "tandem: guest requested a reset; ending the run\n");
      break;
    case Exit::GuestPass:
      break;
  }
  if (opt.state_hash) {
    std::fprintf(stderr, "state-hash=%016llx icount=%llu\n",
                 static_cast<unsigned long long>(machine->state_hash()),
                 static_cast<unsigned long long>(result.icount));
  }
  if (opt.stats) {
    const uint64_t executed = result.icount - start_icount;
    std::fprintf(stderr, "instructions=%llu wall_s=%.3f mips=%.1f\n", static_cast<unsigned long long>(executed),
                 wall_s, wall_s > 0 ? executed / wall_s / 1e6 : 0.0);
  }
  return guest_status(result);
}

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
  run_cmd->add_option("GUEST", run.guest, "Guest image: RISC-V ELF64 or raw binary loaded at 0x80000000");
  run_cmd->add_option("--mem", run.mem_mib, "Guest RAM in MiB")->capture_default_str();
  run_cmd->add_option("--disk", run.disk, "Attach FILE as a virtio-blk disk (writes go to the file)");
  run_cmd->add_option("--max-instructions", run.max_instructions,
                      "Stop when the icount reaches N (absolute, also after --restore); exit status 3");
  run_cmd->add_flag("--stats", run.stats, "Print 'instructions=N wall_s=S mips=M' on stderr at the end");
  run_cmd->add_flag("--state-hash", run.state_hash, "Print the final machine state hash (XXH3-64) on stderr");
  run_cmd->add_option("--save", run.save_path, "Write a machine snapshot to FILE at --save-at");
  run_cmd->add_option("--save-at", run.save_at, "The icount N at which --save is taken; the run then continues");
  run_cmd->add_option("--restore", run.restore_path,
                      "Start from the snapshot FILE instead of booting GUEST (same --mem and --disk)");
  run_cmd->add_option("--poll-interval", run.poll_interval, "Instructions between console polls")
      ->capture_default_str();

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
    if (*run_cmd) return run_command(run);
  } catch (const BadInput& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return kStatusBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
