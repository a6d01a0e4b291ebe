#include "runner/session.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "console/stdio_console.h"
#include "console/tcp_console.h"
#include "hostnet/backend.h"
#include "vmm-hooks/event_log.h"
#include "vmm-hooks/live.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm/cpu/hart.h"
#include "vmm/cross_check.h"
#include "vmm/devices/disk_image.h"
#include "vmm/loader.h"

namespace tandem::runner {
namespace {

using vmm::Exit;

// Instructions a replay runs between two looks at the interrupt flag (a guest that never
// waits and a log with no record for a long stretch would otherwise not notice a signal).
constexpr uint64_t kReplaySlice = uint64_t{1} << 22;

struct Interrupted {};

// A World stopped at its next service point or idle wait once `interrupted` is set.
template <typename WorldT>
class Interruptible : public WorldT {
 public:
  template <typename... Args>
  Interruptible(const volatile std::sig_atomic_t* interrupted, Args&&... args)
      : WorldT(std::forward<Args>(args)...), interrupted_(interrupted) {}
  void service(vmm::Machine& m) override {
    check();
    WorldT::service(m);
  }
  bool idle(vmm::Machine& m, uint64_t deadline) override {
    check();
    const bool woke = WorldT::idle(m, deadline);
    check();  // the wait was cut short by the signal
    return woke;
  }
  void check() const {
    if (interrupted_ && *interrupted_) throw Interrupted{};
  }

 private:
  const volatile std::sig_atomic_t* interrupted_;
};

bool is_set(const volatile std::sig_atomic_t* flag) { return flag && *flag; }

void check_machine_options(const MachineOptions& opt) {
  if (const auto broken = opt.boot.check()) throw BadInput(vmm::BootSpec::describe_for_cli(*broken));
  if (opt.mem_mib == 0 || opt.mem_mib > 65536) throw BadInput("--mem must be 1..65536 MiB");
  vmm::CpuEngine engine{};
  if (opt.cpu != "check" && !vmm::parse_cpu_engine(opt.cpu, engine)) {
    throw BadInput("--cpu must be interp, jit or check (tandem run), not '" + opt.cpu + "'");
  }
  if (opt.cpu != "check") vmm::set_default_cpu_engine(engine);
}

vmm::MachineConfig machine_config(const MachineOptions& opt) {
  vmm::MachineConfig config;
  config.mem_bytes = opt.mem_mib << 20;
  config.disk_path = opt.disk;
  config.bootargs = opt.boot.append;
  return config;
}

std::unique_ptr<hooks::ConsolePort> open_console_or_throw(const std::string& spec) {
  try {
    auto console = tandem::console::open_console(spec);
    if (auto* tcp = dynamic_cast<tandem::console::TcpConsole*>(console.get())) {
      // Always said: with port 0 this is how a client (or a test) learns the port.
      std::fprintf(stderr, "tandem: console listening on tcp:127.0.0.1:%u\n", tcp->port());
    }
    return console;
  } catch (const std::exception& e) {
    throw BadInput(e.what());
  }
}

// --net SPEC: gives the machine its NIC and opens the host backend (nullptr without --net).
std::unique_ptr<hooks::NetPort> open_net(const std::string& spec, vmm::MachineConfig& config) {
  if (spec.empty()) return nullptr;
  try {
    const hostnet::NetSpec net = hostnet::parse_net_spec(spec);
    config.nic = vmm::NicConfig{net.mac, net.mtu, net.link_up};
    return hostnet::open_backend(net);
  } catch (const std::exception& e) {
    throw BadInput(e.what());
  }
}

// Builds a machine and boots `boot` in it; bad input becomes BadInput.
void boot(std::optional<vmm::Machine>& machine, const vmm::MachineConfig& config, vmm::World& world,
          const vmm::BootSpec& boot) {
  try {
    machine.emplace(config, world);
    boot.load_into(*machine);
  } catch (const vmm::LoadError& e) {
    throw BadInput(e.what());
  } catch (const vmm::DiskError& e) {
    throw BadInput(e.what());
  }
}

void print_stats(uint64_t executed, double wall_s) {
  std::fprintf(stderr, "instructions=%llu wall_s=%.3f mips=%.1f\n", static_cast<unsigned long long>(executed),
               wall_s, wall_s > 0 ? executed / wall_s / 1e6 : 0.0);
}

void print_state_hash(vmm::Machine& machine) {
  std::fprintf(stderr, "state-hash=%016llx icount=%llu\n", static_cast<unsigned long long>(machine.state_hash()),
               static_cast<unsigned long long>(machine.icount()));
}

void write_snapshot(vmm::Machine& machine, const std::string& path) {
  // A full checkpoint (RAM, devices and the disk's blocks), written atomically.
  try {
    checkpoint::save_file(machine, path);
  } catch (const checkpoint::CheckpointError& e) {
    throw BadInput(e.what());
  }
}

int guest_status(const vmm::RunResult& r) {
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
void report_end(const vmm::RunResult& result) {
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
void dump_device_tree(vmm::Machine& machine, const std::string& path) {
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

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

namespace {

// The World of `--cpu check`: no input at all (so both machines see the same, none),
// service points on a fixed grid, entropy from the icount, output to stdout from the
// reference machine only.
class CheckWorld final : public vmm::World {
 public:
  explicit CheckWorld(bool prints) : prints_(prints) {}
  uint64_t next_service_icount(uint64_t now) override { return (now / kEvery + 1) * kEvery; }
  void service(vmm::Machine&) override {}
  bool idle(vmm::Machine&, uint64_t) override { return false; }
  void output(vmm::OutputChannel channel, uint64_t, std::span<const uint8_t> bytes) override {
    if (prints_ && channel == vmm::OutputChannel::Console) {
      std::fwrite(bytes.data(), 1, bytes.size(), stdout);
      std::fflush(stdout);
    }
  }
  void entropy(uint64_t icount, std::span<uint8_t> out) override {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>((icount + i) * 0x9d);
  }

 private:
  static constexpr uint64_t kEvery = 1u << 20;
  bool prints_;
};

// `tandem run --cpu check`: the guest on the interpreter and on the translator side by side.
int check_session(const RunOptions& opt) {
  const MachineOptions& mo = opt.machine;
  if (mo.boot.empty()) throw BadInput("--cpu check needs GUEST or --bios");
  if (!opt.restore_path.empty() || opt.save_at || !opt.net.empty() || !opt.dump_dtb.empty() ||
      !mo.disk.empty()) {
    throw BadInput("--cpu check takes no --restore, --save, --net, --disk or --dump-dtb");
  }
  if (mo.check_every == 0) throw BadInput("--check-every must be > 0");
  const vmm::MachineConfig config = machine_config(mo);
  CheckWorld world_a(true), world_b(false);
  std::optional<vmm::Machine> a, b;
  boot(a, config, world_a, mo.boot);
  boot(b, config, world_b, mo.boot);
  a->hart().set_engine(vmm::CpuEngine::Interpreter);
  b->hart().set_engine(vmm::CpuEngine::Translator);
  const auto start = std::chrono::steady_clock::now();
  const vmm::CrossCheckResult r =
      vmm::cross_check(*a, *b, mo.check_every, mo.max_instructions.value_or(UINT64_MAX));
  const double wall_s = seconds_since(start);
  std::fprintf(stderr, "tandem: %s\n", r.describe().c_str());
  if (!r.same) return kStatusCpuMismatch;
  report_end(r.exit);
  if (mo.state_hash) print_state_hash(*a);
  if (mo.stats) print_stats(r.icount, wall_s);
  return guest_status(r.exit);
}

}  // namespace

int run_session(const RunOptions& opt, const volatile std::sig_atomic_t* interrupted) {
  const MachineOptions& mo = opt.machine;
  check_machine_options(mo);
  if (mo.cpu == "check") return check_session(opt);
  if (const auto broken = mo.boot.check()) throw BadInput(vmm::BootSpec::describe_for_cli(*broken));
  if (mo.boot.empty() && opt.restore_path.empty()) throw BadInput("GUEST or --bios is required (or --restore FILE)");
  if (opt.save_path.empty() != !opt.save_at.has_value()) throw BadInput("--save and --save-at go together");
  check_machine_options(mo);
  if (opt.poll_interval == 0) throw BadInput("--poll-interval must be > 0");
  if (opt.save_at && mo.max_instructions && *opt.save_at > *mo.max_instructions) {
    throw BadInput("--save-at is past --max-instructions: the snapshot would never be taken");
  }
  if (!opt.restore_path.empty() && !mo.boot.empty()) {
    spdlog::warn("{} is ignored: the machine comes from --restore {}", mo.boot.log_image(), opt.restore_path);
  }

  vmm::MachineConfig config = machine_config(mo);
  const auto net = open_net(opt.net, config);
  tandem::console::StdioConsole console;
  Interruptible<hooks::Live> live(interrupted, console,
                                  hooks::LiveOptions{.poll_interval = opt.poll_interval,
                                                     .interactive = ::isatty(STDIN_FILENO) != 0,
                                                     .interrupted = interrupted,
                                                     .net = net.get()});
  std::optional<vmm::Machine> machine;
  try {
    machine.emplace(config, live);
    if (!opt.restore_path.empty()) {
      checkpoint::load_file(*machine, opt.restore_path);
      spdlog::debug("restored {} at icount {}", opt.restore_path, machine->icount());
    } else {
      mo.boot.load_into(*machine);
    }
  } catch (const vmm::LoadError& e) {
    throw BadInput(e.what());
  } catch (const vmm::DiskError& e) {
    throw BadInput(e.what());
  } catch (const vmm::StateError& e) {
    throw BadInput(opt.restore_path + ": " + e.what());
  } catch (const checkpoint::CheckpointError& e) {
    throw BadInput(e.what());
  }

  if (!opt.dump_dtb.empty()) {
    if (!opt.restore_path.empty()) throw BadInput("--dump-dtb needs a boot (GUEST or --bios), not --restore");
    dump_device_tree(*machine, opt.dump_dtb);
    return 0;
  }

  const uint64_t limit = mo.max_instructions.value_or(UINT64_MAX);
  const uint64_t start_icount = machine->icount();
  const auto start = std::chrono::steady_clock::now();
  vmm::RunResult result;
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
  const double wall_s = seconds_since(start);
  live.flush();
  report_end(result);
  if (mo.state_hash) print_state_hash(*machine);
  if (mo.stats) print_stats(result.icount - start_icount, wall_s);
  return guest_status(result);
}

int record_session(const RecordOptions& opt, const volatile std::sig_atomic_t* interrupted) {
  const MachineOptions& mo = opt.machine;
  if (mo.cpu == "check") throw BadInput("--cpu check is for tandem run only");
  if (const auto broken = mo.boot.check()) throw BadInput(vmm::BootSpec::describe_for_cli(*broken));
  if (mo.boot.empty()) throw BadInput("GUEST or --bios is required");
  if (opt.log_path.empty()) throw BadInput("--log FILE is required");
  check_machine_options(mo);
  if (opt.poll_interval == 0) throw BadInput("--poll-interval must be > 0");
  if (opt.time != "wall" && opt.time != "virtual") throw BadInput("--time must be 'wall' or 'virtual'");

  vmm::MachineConfig config = machine_config(mo);
  const auto net = open_net(opt.net, config);
  auto console = open_console_or_throw(opt.console);
  hooks::RecorderOptions options;
  options.net = net.get();
  options.audit_interval = opt.audit_interval;
  options.poll_interval = opt.poll_interval;
  options.time = opt.time == "wall" ? hooks::GuestTime::Wall : hooks::GuestTime::Virtual;
  options.interrupt_flag = interrupted;
  Interruptible<hooks::Recorder> recorder(interrupted, *console, options);
  std::optional<vmm::Machine> machine;
  boot(machine, config, recorder, mo.boot);

  std::optional<hooks::FileBatchSink> sink;
  try {
    sink.emplace(opt.log_path, recorder.make_header(*machine, mo.boot.log_image()));
  } catch (const std::exception& e) {
    throw BadInput(e.what());
  }
  recorder.begin(*machine, *sink);
  const auto start = std::chrono::steady_clock::now();
  vmm::RunResult result;
  try {
    result = machine->run_until(mo.max_instructions.value_or(UINT64_MAX));
    if (is_set(interrupted)) throw Interrupted{};
  } catch (const Interrupted&) {
    // The log stays valid: everything up to here is flushed, without an END record.
    recorder.flush();
    spdlog::warn("interrupted at icount {}; the log ends there", machine->icount());
    return kStatusInterrupted;
  }
  recorder.finish(*machine, result);
  const double wall_s = seconds_since(start);
  report_end(result);
  if (mo.state_hash) print_state_hash(*machine);
  if (mo.stats) {
    std::fprintf(stderr, "records=%llu log_bytes=%llu\n", static_cast<unsigned long long>(recorder.records_written()),
                 static_cast<unsigned long long>(sink->bytes_written()));
    print_stats(result.icount, wall_s);
  }
  return guest_status(result);
}

int replay_session(const ReplayOptions& opt, const volatile std::sig_atomic_t* interrupted) {
  const MachineOptions& mo = opt.machine;
  if (mo.cpu == "check") throw BadInput("--cpu check is for tandem run only");
  if (const auto broken = mo.boot.check()) throw BadInput(vmm::BootSpec::describe_for_cli(*broken));
  if (mo.boot.empty()) throw BadInput("GUEST or --bios is required");
  if (opt.log_path.empty()) throw BadInput("--log FILE is required");
  check_machine_options(mo);
  std::optional<hooks::LogFileReader> reader;
  try {
    reader.emplace(opt.log_path);
  } catch (const std::exception& e) {
    throw BadInput(opt.log_path + ": " + e.what());
  }
  const auto& recorded = reader->header().config();
  vmm::MachineConfig config = machine_config(mo);
  try {
    config.nic = hooks::Replayer::recorded_nic(reader->header());  // no host network: frames come from the log
  } catch (const std::exception& e) {
    throw BadInput(opt.log_path + ": " + e.what());
  }
  if (recorded.disk_bytes() != 0 && mo.disk.empty()) {
    throw BadInput(opt.log_path + ": the recording had a disk; pass --disk with a copy of the disk as it was when recording began");
  }
  if (recorded.guest_digest() != 0 && hooks::file_digest(mo.boot.log_image()) != recorded.guest_digest()) {
    throw BadInput(mo.boot.log_image() + ": not the guest this log was recorded with ('" + recorded.guest_name() + "')");
  }
  hooks::FileBatchSource source(*reader);
  tandem::console::StdioConsole console(-1, STDOUT_FILENO);  // output only: replay never reads stdin
  Interruptible<hooks::Replayer> replayer(interrupted, source, &console, opt.verify);
  std::optional<vmm::Machine> machine;
  // The log knows the memory size it was recorded with; --mem only has to agree.
  boot(machine, config, replayer, mo.boot);
  // The same content hash the recorder put in the header (DiskImage's block hashes).
  if (const vmm::DiskImage* disk = machine->board().disk(); disk && disk->content_hash() != recorded.disk_digest()) {
    throw BadInput(mo.disk + ": disk content differs from the disk at the start of the recording; replay needs a copy of the original disk");
  }
  if (const std::string err = hooks::Replayer::check_header(reader->header(), *machine); !err.empty()) {
    throw BadInput(opt.log_path + ": " + err);
  }

  const uint64_t limit = mo.max_instructions.value_or(UINT64_MAX);
  const auto start = std::chrono::steady_clock::now();
  vmm::RunResult result;
  try {
    // In slices, so that a signal is noticed whatever the guest does.
    for (;;) {
      const uint64_t slice_end = std::min(limit, machine->icount() + kReplaySlice);
      result = replayer.run(*machine, slice_end);
      replayer.check();
      if (result.exit != Exit::Running || replayer.divergence() || replayer.end() || result.icount >= limit) break;
      if (result.icount < slice_end) break;  // the end of the log
    }
  } catch (const hooks::LogError& e) {
    console.flush();
    throw BadInput(opt.log_path + ": " + e.what());
  } catch (const Interrupted&) {
    replayer.flush_output();
    console.flush();
    spdlog::warn("interrupted at icount {}", machine->icount());
    return kStatusInterrupted;
  }
  const double wall_s = seconds_since(start);
  console.flush();
  if (mo.state_hash) print_state_hash(*machine);
  if (mo.stats) {
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
    if (result.exit == Exit::Running && mo.max_instructions && result.icount >= *mo.max_instructions) {
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

}  // namespace tandem::runner
