// Protection in one process: the steps of a live pair (replicator/node.cpp) without the
// sockets. A primary under a Recorder runs unrecorded, ends a pre-copy slice with its idle
// waits interrupted (where a real pre-copy stops), writes a full checkpoint and starts
// recording; a fresh machine applies the checkpoint and replays that log to the end. Any
// state the checkpoint does not carry but that decides the guest's path (a device's, the
// hart's, the run loop's) shows up as a divergence or a different final state hash, at
// every sync point tried. Each new device is covered by running a guest that uses it.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>

#include "checkpoint/checkpoint.h"
#include "tests/support/linux_images.h"
#include "tests/vmm-hooks/scripted_console.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm/machine.h"

namespace tandem::checkpoint {
namespace {

using hooks::testing::ScriptedConsole;

class MemorySink final : public hooks::BatchSink {
 public:
  void write_batch(const log::LogBatch& batch) override { batches.push_back(batch); }
  std::deque<log::LogBatch> batches;
};

class MemorySource final : public hooks::BatchSource {
 public:
  explicit MemorySource(std::deque<log::LogBatch> batches) : batches_(std::move(batches)) {}
  std::optional<log::LogBatch> next_batch() override {
    if (batches_.empty()) return std::nullopt;
    log::LogBatch b = std::move(batches_.front());
    batches_.pop_front();
    return b;
  }
  bool finished() const override { return batches_.empty(); }

 private:
  std::deque<log::LogBatch> batches_;
};

struct Guest {
  std::string elf;         // a bare-metal guest; empty for a firmware boot
  vmm::BootImages boot;    // the firmware boot (Linux)
  vmm::MachineConfig config;
  std::string input;       // console input, delivered as the primary polls
  bool with_disk = false;  // a zeroed virtio-blk disk (the replica gets its own file)
  std::string name() const { return elf.empty() ? boot.kernel : elf; }
  void load(vmm::Machine& m) const {
    if (elf.empty()) {
      m.boot(boot);
    } else {
      m.load(elf);
    }
  }
};

// Short, so that the sync points of a small guest spread over its whole run.
constexpr uint64_t kPrecopySlice = 500;

struct Outcome {
  uint64_t sync_icount = 0;
  vmm::RunResult primary_end;
  uint64_t primary_hash = 0;
  std::optional<hooks::Divergence> divergence;
  std::optional<hooks::ReplayEnd> replay_end;
  uint64_t replica_hash = 0;
  uint64_t audits = 0;
};

class ProtectReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tandem_protect_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string fresh_disk(const std::string& name) {
    const std::string path = (dir_ / name).string();
    std::ofstream(path, std::ios::binary | std::ios::trunc).close();
    std::filesystem::resize_file(path, 1 << 20);
    return path;
  }

  // The primary runs unrecorded to `sync_at`, then one pre-copy slice (idle waits
  // interrupted, as with `wake` in the node), is checkpointed there and records up to `end`.
  Outcome protect_and_replay(Guest g, uint64_t sync_at, uint64_t end) {
    hooks::RecorderOptions options;
    options.time = hooks::GuestTime::Virtual;
    options.poll_interval = 4096;      // input lands at many different icounts
    options.audit_interval = 50'000;   // a divergence is caught close to its cause
    volatile std::sig_atomic_t wake = 0;
    options.interrupt_flag = &wake;
    ScriptedConsole console(g.input);
    hooks::Recorder recorder(console, options);
    vmm::MachineConfig primary_config = g.config;
    if (g.with_disk) primary_config.disk_path = fresh_disk("primary.img");
    vmm::Machine primary(primary_config, recorder);
    g.load(primary);

    Outcome out;
    primary.run_until(sync_at);
    wake = 1;  // the pre-copy's last slice: an idle guest ends it at once
    primary.run_until(primary.icount() + kPrecopySlice);
    out.sync_icount = primary.icount();
    const std::string snapshot = write_full(primary);
    const log::LogHeader header = recorder.make_header(primary, g.name());
    MemorySink sink;
    recorder.set_sink(primary, &sink);
    wake = 0;
    out.primary_end = primary.run_until(end);
    recorder.finish(primary, out.primary_end);
    out.primary_hash = primary.state_hash();

    MemorySource source(std::move(sink.batches));
    hooks::Replayer replayer(source, nullptr);
    vmm::MachineConfig replica_config = g.config;
    if (g.with_disk) replica_config.disk_path = fresh_disk("replica.img");
    vmm::Machine replica(replica_config, replayer);
    checkpoint::apply(replica, snapshot);
    EXPECT_EQ(hooks::Replayer::check_header(header, replica), "");
    replayer.run(replica, end);
    out.divergence = replayer.divergence();
    out.replay_end = replayer.end();
    out.replica_hash = replica.state_hash();
    out.audits = replayer.audits_checked();
    return out;
  }

  // Protects `g` at each sync point and checks the replica ends where the primary did.
  void check_sync_points(const Guest& g, std::initializer_list<uint64_t> sync_points, uint64_t end) {
    for (const uint64_t sync_at : sync_points) {
      SCOPED_TRACE("sync requested at icount " + std::to_string(sync_at));
      const Outcome o = protect_and_replay(g, sync_at, end);
      SCOPED_TRACE("synced at icount " + std::to_string(o.sync_icount));
      ASSERT_FALSE(o.divergence) << o.divergence->what << " at icount " << o.divergence->icount;
      ASSERT_TRUE(o.replay_end) << "the replay did not reach the recorded END";
      EXPECT_EQ(o.replay_end->exit, o.primary_end.exit);
      EXPECT_EQ(o.replay_end->icount, o.primary_end.icount);
      EXPECT_EQ(o.replica_hash, o.primary_hash);
    }
  }

  // Protects `g` every `step` instructions over its whole run (to its end or `end`).
  void sweep_sync_points(const Guest& g, uint64_t step, uint64_t end) {
    const Outcome reference = protect_and_replay(g, 0, end);
    ASSERT_FALSE(reference.divergence) << reference.divergence->what << " at " << reference.divergence->icount;
    const uint64_t length = reference.primary_end.icount;
    ASSERT_GT(length, 2 * step) << "the guest is too short for this step";
    unsigned tried = 0;
    for (uint64_t sync_at = step; sync_at < length; sync_at += step, ++tried) {
      check_sync_points(g, {sync_at}, end);
      if (HasFatalFailure()) return;
    }
    RecordProperty("sync_points", static_cast<int>(tried));
  }

  static Guest small(const std::string& name) {
    Guest g;
    g.elf = std::string(TANDEM_GUEST_DIR) + "/" + name + ".elf";
    return g;
  }

  std::filesystem::path dir_;
};

// Timer interrupts and idle skips (WFI with mtimecmp ahead).
TEST_F(ProtectReplayTest, TimerGuestProtectedAnywhere) { sweep_sync_points(small("timer"), 997, 10'000'000); }

TEST_F(ProtectReplayTest, IdleGuestOnA1kHzTimerProtectedAnywhere) {
  sweep_sync_points(small("idle1k_short"), 991, 10'000'000);
}

// UART and PLIC: input delivered after the sync, interrupts claimed and completed.
TEST_F(ProtectReplayTest, PlicUartGuestWithInputProtectedAnywhere) {
  Guest g = small("plic_uart");
  g.input = "ping\n";
  sweep_sync_points(g, 499, 10'000'000);
}

// virtio-rng entropy, timer and console input together.
TEST_F(ProtectReplayTest, MixGuestWithEntropyTimerAndInputProtectedAnywhere) {
  Guest g = small("mix");
  g.input = "first line\nsecond\nquit\n";
  sweep_sync_points(g, 503, 10'000'000);
}

// virtio-blk: the kv store writes its disk; the checkpoint carries the blocks.
TEST_F(ProtectReplayTest, KvGuestWithADiskProtectedAnywhere) {
  Guest g = small("kv");
  g.with_disk = true;
  g.input = "SET a 1\nSET b 2\nSYNC\nGET a\nCOUNT\n";
  sweep_sync_points(g, 150'001, 10'000'000);
}

// The Linux kv guest (OpenSBI + kernel + /init) when its images are there: this build's
// guest/linux (built by `make test`), or TANDEM_LINUX_IMAGES=another-build/guest/linux.
// The boot, and the idle after the banner.
TEST_F(ProtectReplayTest, LinuxGuestWhenItsImagesAreThere) {
  const tandem::test::LinuxImages images = tandem::test::linux_guest_images();
  if (!images.missing.empty()) GTEST_SKIP() << images.missing;
  Guest g;
  g.boot = images.boot;
  g.config.mem_bytes = 128ull << 20;
  g.config.bootargs = "console=ttyS0 printk.time=0";
  check_sync_points(g, {1'000'000, 15'000'003, 26'900'000}, 32'000'000);
}

}  // namespace
}  // namespace tandem::checkpoint
