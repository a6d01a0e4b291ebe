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
#include <vector>

#include "checkpoint/checkpoint.h"
#include "hostnet/backend.h"
#include "vmm-hooks/event_log.h"
#include "vmm-hooks/live.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm-hooks/stdio_console.h"
#include "vmm-hooks/tcp_console.h"
#include "vmm/devices/disk_image.h"
#include "vmm/loader.h"
#include "vmm/cpu/hart.h"
#include "vmm/machine.h"

namespace {

using tandem::vmm::Exit;

// Exit statuses of `tandem run` (also in docs/tandem-run.md).
constexpr int kStatusBadInput = 2;     // bad command line, image, disk or snapshot
constexpr int kStatusLimit = 3;        // --max-instructions reached
constexpr int kStatusIdle = 4;         // the guest waits for input that can never come
constexpr int kStatusDivergence = 4;   // replay: the machine left the recorded path
constexpr int kStatusInterrupted = 130;

volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void on_signal(int) { g_interrupted = 1; }

// What to boot: a bare GUEST image, or firmware + kernel (+ initrd) as QEMU's
// -bios/-kernel/-initrd/-append.
struct ImageOptions {
  std::string guest;
  std::string bios;
  std::string kernel;
  std::string initrd;
  std::string append;
  bool empty() const { return guest.empty() && bios.empty(); }
  // The file a log header names and digests: the GUEST, or the firmware of a firmware boot
  // (the kernel, initrd and bootargs are covered by the initial state hash).
  const std::string& primary() const { return guest.empty() ? bios : guest; }
};

struct RunOptions {
  ImageOptions image;
  uint64_t mem_mib = tandem::vmm::kDefaultMemBytes >> 20;
  std::string disk;
  std::optional<uint64_t> max_instructions;
  bool stats = false;
  bool state_hash = false;
  std::string save_path;
  std::optional<uint64_t> save_at;
  std::string restore_path;
  uint64_t poll_interval = 1u << 20;
  std::string console = "stdio";
  std::string dump_dtb;
  std::string net;  // --net SPEC (hostnet/spec.h); empty: no NIC
};

struct RecordOptions {
  RunOptions run;
  std::string log_path;
  uint64_t audit_interval = 10'000'000;
  std::string time = "wall";
};

struct ReplayOptions {
  ImageOptions image;
  std::string log_path;
  uint64_t mem_mib = tandem::vmm::kDefaultMemBytes >> 20;
  std::string disk;
  std::optional<uint64_t> max_instructions;
  bool stats = false;
  bool state_hash = false;
  bool verify = true;
};

class BadInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Interrupted {};

// A World stopped by SIGINT/SIGTERM at its next service point or idle wait.
template <typename WorldT>
class Interruptible : public WorldT {
 public:
  using WorldT::WorldT;
  void service(tandem::vmm::Machine& m) override {
    if (g_interrupted) throw Interrupted{};
    WorldT::service(m);
  }
  bool idle(tandem::vmm::Machine& m, uint64_t deadline) override {
    if (g_interrupted) throw Interrupted{};
    const bool woke = WorldT::idle(m, deadline);
    if (g_interrupted) throw Interrupted{};  // the wait was cut short by the signal
    return woke;
  }
};
using InterruptibleLive = Interruptible<tandem::hooks::Live>;

std::unique_ptr<tandem::hooks::ConsolePort> open_console_or_throw(const std::string& spec) {
  try {
    auto console = tandem::hooks::open_console(spec);
    if (auto* tcp = dynamic_cast<tandem::hooks::TcpConsole*>(console.get())) {
      // Always said: with port 0 this is how a client (or a test) learns the port.
      std::fprintf(stderr, "tandem: console listening on tcp:127.0.0.1:%u\n", tcp->port());
    }
    return console;
  } catch (const std::exception& e) {
    throw BadInput(e.what());
  }
}

// --net SPEC: gives the machine its NIC and opens the host backend (nullptr without --net).
std::unique_ptr<tandem::hooks::NetPort> open_net(const std::string& spec, tandem::vmm::MachineConfig& config) {
  if (spec.empty()) return nullptr;
  try {
    const tandem::hostnet::NetSpec net = tandem::hostnet::parse_net_spec(spec);
    config.nic = tandem::vmm::NicConfig{net.mac, net.mtu, net.link_up};
    return tandem::hostnet::open_backend(net);
  } catch (const std::exception& e) {
    throw BadInput(e.what());
  }
}

// The combinations of image options that make sense; "" when fine.
std::string check_images(const ImageOptions& image) {
  if (!image.guest.empty() && !image.bios.empty()) {
    return "GUEST and --bios exclude each other (GUEST is a bare image entered in M-mode; --bios boots firmware)";
  }
  if (!image.kernel.empty() && image.bios.empty()) {
    return "--kernel needs --bios FILE (the SBI firmware the kernel runs under, e.g. "
           "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin)";
  }
  if (!image.initrd.empty() && image.kernel.empty()) return "--initrd needs --kernel";
  return "";
}

void add_image_options(CLI::App* cmd, ImageOptions& image) {
  cmd->add_option("GUEST", image.guest, "Guest image: RISC-V ELF64 or raw binary loaded at 0x80000000, entered in M-mode");
  cmd->add_option("--bios", image.bios,
                  "Firmware (e.g. OpenSBI fw_jump.bin): raw at 0x80000000 or ELF, entered in M-mode with "
                  "a0 = hart id, a1 = device tree; instead of GUEST");
  cmd->add_option("--kernel", image.kernel,
                  "Kernel for the firmware to start: raw Linux Image at 0x80200000 or ELF (needs --bios)");
  cmd->add_option("--initrd", image.initrd,
                  "Initial ramdisk, placed high in RAM below the device tree; /chosen linux,initrd-start/end "
                  "(needs --kernel)");
  cmd->add_option("--append", image.append, "Kernel command line (/chosen bootargs)");
}

// Loads what `image` names into `machine`.
void load_images(tandem::vmm::Machine& machine, const ImageOptions& image) {
  if (!image.bios.empty()) {
    machine.boot({image.bios, image.kernel, image.initrd});
  } else {
    machine.load(image.guest);
  }
}

// Builds a machine and boots `image` in it; bad input becomes BadInput.
void boot(std::optional<tandem::vmm::Machine>& machine, const tandem::vmm::MachineConfig& config,
          tandem::vmm::World& world, const ImageOptions& image) {
  try {
    machine.emplace(config, world);
    load_images(*machine, image);
  } catch (const tandem::vmm::LoadError& e) {
    throw BadInput(e.what());
  } catch (const tandem::vmm::DiskError& e) {
    throw BadInput(e.what());
  }
}

void print_stats(uint64_t executed, double wall_s) {
  std::fprintf(stderr, "instructions=%llu wall_s=%.3f mips=%.1f\n", static_cast<unsigned long long>(executed),
               wall_s, wall_s > 0 ? executed / wall_s / 1e6 : 0.0);
}

void print_state_hash(tandem::vmm::Machine& machine) {
  std::fprintf(stderr, "state-hash=%016llx icount=%llu\n", static_cast<unsigned long long>(machine.state_hash()),
               static_cast<unsigned long long>(machine.icount()));
}

void write_snapshot(tandem::vmm::Machine& machine, const std::string& path) {
  // A full checkpoint (RAM, devices and the disk's blocks), written atomically.
  try {
    tandem::checkpoint::save_file(machine, path);
  } catch (const tandem::checkpoint::CheckpointError& e) {
    throw BadInput(e.what());
  }
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

// One line on stderr saying why a run ended (nothing for a guest that passed).
void report_end(const tandem::vmm::RunResult& result) {
  switch (result.exit) {
    case Exit::Running:
      std::fprintf(stderr, "tandem: stopped at the instruction limit (icount %llu)\n",
                   static_cast<unsigned long long>(result.icount));
      break;
    case Exit::Idle:
      std::fprintf(stderr, "tandem: guest is idle with no timer armed and no console input left; stopped at icount %llu\n",
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
}

// Writes the device tree the machine was booted with (a1 at reset) to `path`, as QEMU's
// -machine dumpdtb does; `dtc -I dtb -O dts` shows it.
void dump_device_tree(tandem::vmm::Machine& machine, const std::string& path) {
  const uint64_t addr = machine.hart().reg(11);
  uint8_t header[8];
  if (!machine.memory().read(addr, header)) throw BadInput("no device tree at a1");
  const uint32_t size = (uint32_t{header[4]} << 24) | (uint32_t{header[5]} << 16) | (uint32_t{header[6]} << 8) | header[7];
  std::vector<uint8_t> blob(size);
  if (!machine.memory().read(addr, blob)) throw BadInput("device tree runs past the end of RAM");
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(blob.data()), static_cast<std::streamsize>(blob.size()));
  out.close();
  if (!out) throw BadInput(path + ": cannot write the device tree");
}

int run_command(const RunOptions& opt) {
  if (const std::string err = check_images(opt.image); !err.empty()) throw BadInput(err);
  if (opt.image.empty() && opt.restore_path.empty()) throw BadInput("GUEST or --bios is required (or --restore FILE)");
  if (opt.save_path.empty() != !opt.save_at.has_value()) throw BadInput("--save and --save-at go together");
  if (opt.mem_mib == 0 || opt.mem_mib > 65536) throw BadInput("--mem must be 1..65536 MiB");
  if (opt.poll_interval == 0) throw BadInput("--poll-interval must be > 0");
  if (opt.save_at && opt.max_instructions && *opt.save_at > *opt.max_instructions) {
    throw BadInput("--save-at is past --max-instructions: the snapshot would never be taken");
  }
  if (!opt.restore_path.empty() && !opt.image.empty()) {
    spdlog::warn("{} is ignored: the machine comes from --restore {}", opt.image.primary(), opt.restore_path);
  }

  tandem::vmm::MachineConfig config;
  config.mem_bytes = opt.mem_mib << 20;
  config.disk_path = opt.disk;
  config.bootargs = opt.image.append;
  const auto net = open_net(opt.net, config);

  tandem::hooks::StdioConsole console;
  InterruptibleLive live(console, {.poll_interval = opt.poll_interval,
                                   .interactive = ::isatty(STDIN_FILENO) != 0,
                                   .interrupted = &g_interrupted,
                                   .net = net.get()});
  std::optional<tandem::vmm::Machine> machine;
  try {
    machine.emplace(config, live);
    if (!opt.restore_path.empty()) {
      tandem::checkpoint::load_file(*machine, opt.restore_path);
      spdlog::debug("restored {} at icount {}", opt.restore_path, machine->icount());
    } else {
      load_images(*machine, opt.image);
    }
  } catch (const tandem::vmm::LoadError& e) {
    throw BadInput(e.what());
  } catch (const tandem::vmm::DiskError& e) {
    throw BadInput(e.what());
  } catch (const tandem::vmm::StateError& e) {
    throw BadInput(opt.restore_path + ": " + e.what());
  } catch (const tandem::checkpoint::CheckpointError& e) {
    throw BadInput(e.what());
  }

  if (!opt.dump_dtb.empty()) {
    if (!opt.restore_path.empty()) throw BadInput("--dump-dtb needs a boot (GUEST or --bios), not --restore");
    dump_device_tree(*machine, opt.dump_dtb);
    return 0;
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
  } catch (const Interrupted&) {
    live.flush();
    spdlog::warn("interrupted at icount {}", machine->icount());
    return kStatusInterrupted;
  }
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  live.flush();
  report_end(result);
  if (opt.state_hash) print_state_hash(*machine);
  if (opt.stats) print_stats(result.icount - start_icount, wall_s);
  return guest_status(result);
}

int record_command(const RecordOptions& opt) {
  const RunOptions& run = opt.run;
  if (const std::string err = check_images(run.image); !err.empty()) throw BadInput(err);
  if (run.image.empty()) throw BadInput("GUEST or --bios is required");
  if (opt.log_path.empty()) throw BadInput("--log FILE is required");
  if (run.mem_mib == 0 || run.mem_mib > 65536) throw BadInput("--mem must be 1..65536 MiB");
  if (run.poll_interval == 0) throw BadInput("--poll-interval must be > 0");
  if (opt.time != "wall" && opt.time != "virtual") throw BadInput("--time must be 'wall' or 'virtual'");

  tandem::vmm::MachineConfig config;
  config.mem_bytes = run.mem_mib << 20;
  config.disk_path = run.disk;
  config.bootargs = run.image.append;
  const auto net = open_net(run.net, config);
  auto console = open_console_or_throw(run.console);
  tandem::hooks::RecorderOptions options;
  options.net = net.get();
  options.audit_interval = opt.audit_interval;
  options.poll_interval = run.poll_interval;
  options.time = opt.time == "wall" ? tandem::hooks::GuestTime::Wall : tandem::hooks::GuestTime::Virtual;
  options.interrupt_flag = &g_interrupted;
  Interruptible<tandem::hooks::Recorder> recorder(*console, options);
  std::optional<tandem::vmm::Machine> machine;
  boot(machine, config, recorder, run.image);

  std::optional<tandem::hooks::FileBatchSink> sink;
  try {
    sink.emplace(opt.log_path, recorder.make_header(*machine, run.image.primary()));
  } catch (const std::exception& e) {
    throw BadInput(e.what());
  }
  recorder.begin(*machine, *sink);
  const auto start = std::chrono::steady_clock::now();
  tandem::vmm::RunResult result;
  try {
    result = machine->run_until(run.max_instructions.value_or(UINT64_MAX));
    if (g_interrupted) throw Interrupted{};
  } catch (const Interrupted&) {
    // The log stays valid: everything up to here is flushed, without an END record.
    recorder.flush();
    spdlog::warn("interrupted at icount {}; the log ends there", machine->icount());
    return kStatusInterrupted;
  }
  recorder.finish(*machine, result);
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  report_end(result);
  if (run.state_hash) print_state_hash(*machine);
  if (run.stats) {
    std::fprintf(stderr, "records=%llu log_bytes=%llu\n", static_cast<unsigned long long>(recorder.records_written()),
                 static_cast<unsigned long long>(sink->bytes_written()));
    print_stats(result.icount, wall_s);
  }
  return guest_status(result);
}

int replay_command(const ReplayOptions& opt) {
  if (const std::string err = check_images(opt.image); !err.empty()) throw BadInput(err);
  if (opt.image.empty()) throw BadInput("GUEST or --bios is required");
  if (opt.log_path.empty()) throw BadInput("--log FILE is required");
  if (opt.mem_mib == 0 || opt.mem_mib > 65536) throw BadInput("--mem must be 1..65536 MiB");
  std::optional<tandem::hooks::LogFileReader> reader;
  try {
    reader.emplace(opt.log_path);
  } catch (const std::exception& e) {
    throw BadInput(opt.log_path + ": " + e.what());
  }
  const auto& recorded = reader->header().config();
  tandem::vmm::MachineConfig config;
  // The log knows the memory size it was recorded with; --mem only has to agree.
  config.mem_bytes = opt.mem_mib << 20;
  config.disk_path = opt.disk;
  config.bootargs = opt.image.append;
  try {
    config.nic = tandem::hooks::Replayer::recorded_nic(reader->header());  // no host network: frames come from the log
  } catch (const std::exception& e) {
    throw BadInput(opt.log_path + ": " + e.what());
  }
  if (recorded.disk_bytes() != 0 && opt.disk.empty()) {
    throw BadInput(opt.log_path + ": the recording had a disk; pass --disk with a copy of the disk as it was when recording began");
  }
  if (recorded.guest_digest() != 0 && tandem::hooks::file_digest(opt.image.primary()) != recorded.guest_digest()) {
    throw BadInput(opt.image.primary() + ": not the guest this log was recorded with ('" + recorded.guest_name() + "')");
  }
  tandem::hooks::FileBatchSource source(*reader);
  tandem::hooks::StdioConsole console(-1, STDOUT_FILENO);  // output only: replay never reads stdin
  tandem::hooks::Replayer replayer(source, &console, opt.verify);
  std::optional<tandem::vmm::Machine> machine;
  boot(machine, config, replayer, opt.image);
  // The same content hash the recorder put in the header (DiskImage's block hashes).
  if (const tandem::vmm::DiskImage* disk = machine->board().disk();
      disk && disk->content_hash() != recorded.disk_digest()) {
    throw BadInput(opt.disk + ": disk content differs from the disk at the start of the recording; replay needs a copy of the original disk");
  }
  if (const std::string err = tandem::hooks::Replayer::check_header(reader->header(), *machine); !err.empty()) {
    throw BadInput(opt.log_path + ": " + err);
  }

  const auto start = std::chrono::steady_clock::now();
  tandem::vmm::RunResult result;
  try {
    result = replayer.run(*machine, opt.max_instructions.value_or(UINT64_MAX));
  } catch (const tandem::hooks::LogError& e) {
    console.flush();
    throw BadInput(opt.log_path + ": " + e.what());
  }
  const double wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  console.flush();
  if (opt.state_hash) print_state_hash(*machine);
  if (opt.stats) {
    std::fprintf(stderr, "records=%llu audits_checked=%llu\n", static_cast<unsigned long long>(replayer.records_applied()),
                 static_cast<unsigned long long>(replayer.audits_checked()));
    print_stats(result.icount - reader->header().start_icount(), wall_s);
  }
  if (const auto& d = replayer.divergence()) {
    std::fprintf(stderr, "tandem: divergence at icount %llu: %s differs (log %016llx, replay %016llx)\n",
                 static_cast<unsigned long long>(d->icount), d->what.c_str(),
                 static_cast<unsigned long long>(d->expected), static_cast<unsigned long long>(d->actual));
    return kStatusDivergence;
  }
  if (!replayer.end()) {
    if (result.exit == Exit::Running && opt.max_instructions && result.icount >= *opt.max_instructions) {
      report_end(result);
      return kStatusLimit;
    }
    std::fprintf(stderr, "tandem: the log ends at icount %llu without an END record (the recording was interrupted); replayed up to there\n",
                 static_cast<unsigned long long>(result.icount));
    return 0;
  }
  report_end(result);
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
  add_image_options(run_cmd, run.image);
  run_cmd->add_option("--mem", run.mem_mib, "Guest RAM in MiB")->capture_default_str();
  run_cmd->add_option("--disk", run.disk, "Attach FILE as a virtio-blk disk (writes go to the file)");
  run_cmd->add_option("--net", run.net,
                      "Attach a virtio-net NIC: 'user[,hostfwd=tcp:127.0.0.1:8080-:80]...' (libslirp NAT) or "
                      "'tap,ifname=NAME'; NIC options mac=, mtu=, link= (docs/networking.md)");
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
  add_image_options(record_cmd, rec.run.image);
  record_cmd->add_option("--log", rec.log_path, "Event log to write (created or truncated)")->required();
  record_cmd->add_option("--mem", rec.run.mem_mib, "Guest RAM in MiB")->capture_default_str();
  record_cmd->add_option("--disk", rec.run.disk, "Attach FILE as a virtio-blk disk (writes go to the file)");
  record_cmd->add_option("--net", rec.run.net,
                         "Attach a virtio-net NIC as for run; received frames are logged (replay needs no network)");
  record_cmd->add_option("--max-instructions", rec.run.max_instructions, "Stop when the icount reaches N; exit status 3");
  record_cmd->add_option("--console", rec.run.console, "Console: 'stdio' or 'tcp:127.0.0.1:PORT'")->capture_default_str();
  record_cmd->add_option("--poll-interval", rec.run.poll_interval, "Instructions between console polls")
      ->capture_default_str();
  record_cmd->add_option("--audit-interval", rec.audit_interval,
                         "Instructions between state-hash AUDIT records (0 = only at the end)")
      ->capture_default_str();
  record_cmd->add_option("--time", rec.time,
                         "Guest time: 'wall' (idle waits take real time, logged TIME_ADJUST keeps guest time near "
                         "wall time) or 'virtual' (icount only; idle waits skip at once)")
      ->capture_default_str();
  record_cmd->add_flag("--stats", rec.run.stats, "Print records, log bytes and 'instructions=N wall_s=S mips=M' on stderr");
  record_cmd->add_flag("--state-hash", rec.run.state_hash, "Print the final machine state hash on stderr");

  ReplayOptions rep;
  CLI::App* replay_cmd = app.add_subcommand(
      "replay",
      "Re-execute a recorded run from its event log, reproducing its console output; never reads stdin "
      "or a host clock. Exit status: the recorded guest's, 2 bad log or input, 3 limit, 4 divergence");
  add_image_options(replay_cmd, rep.image);
  replay_cmd->add_option("--log", rep.log_path, "Event log written by 'tandem record'")->required();
  replay_cmd->add_option("--mem", rep.mem_mib, "Guest RAM in MiB (must match the recording)")->capture_default_str();
  replay_cmd->add_option("--disk", rep.disk, "A copy of the disk as it was when the recording began");
  replay_cmd->add_option("--max-instructions", rep.max_instructions, "Stop when the icount reaches N; exit status 3");
  replay_cmd->add_flag("--verify,!--no-verify", rep.verify,
                       "Check every AUDIT and OUTPUT_DIGEST record (default on); stop at the first divergence")
      ->capture_default_str();
  replay_cmd->add_flag("--stats", rep.stats, "Print records applied, audits checked and speed on stderr");
  replay_cmd->add_flag("--state-hash", rep.state_hash, "Print the final machine state hash on stderr");

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
    if (*record_cmd) return record_command(rec);
    if (*replay_cmd) return replay_command(rep);
  } catch (const BadInput& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return kStatusBadInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tandem: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
