// Network frames through the non-determinism boundary: a recorded run of the net_echo guest
// logs every received frame (NET_RX) at the icount it entered the guest, and a replay
// without any network reproduces the same transmitted frames (bytes and icounts), the same
// console output and the same final state hash. A changed frame in the log is caught.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <filesystem>

#include "scripted_console.h"
#include "vmm-hooks/event_log.h"
#include "vmm-hooks/live.h"
#include "vmm-hooks/net_port.h"
#include "vmm-hooks/recorder.h"
#include "vmm-hooks/replayer.h"
#include "vmm/machine.h"

namespace tandem::hooks {
namespace {

using testing::ScriptedConsole;

const std::string kGuest = std::string(TANDEM_GUEST_DIR) + "/net_echo.elf";

// Frames waiting from the start; transmitted frames are kept.
class ScriptedNet : public NetPort {
 public:
  explicit ScriptedNet(std::vector<std::vector<uint8_t>> frames) : waiting_(frames.begin(), frames.end()) {}
  bool receive(std::vector<uint8_t>& frame) override {
    if (waiting_.empty()) return false;
    frame = std::move(waiting_.front());
    waiting_.pop_front();
    return true;
  }
  bool wait_frame(std::chrono::nanoseconds) override { return !waiting_.empty(); }
  void send(std::span<const uint8_t> frame) override { sent.emplace_back(frame.begin(), frame.end()); }
  std::vector<std::vector<uint8_t>> sent;

 private:
  std::deque<std::vector<uint8_t>> waiting_;
};

std::vector<std::vector<uint8_t>> client_frames(size_t n) {
  std::vector<std::vector<uint8_t>> frames;
  for (size_t i = 0; i < n; ++i) {
    std::vector<uint8_t> f(60 + 100 * i);
    const uint8_t src[6] = {0x02, 0, 0, 0, 0, static_cast<uint8_t>(0x10 + i)};
    std::memset(f.data(), 0xff, 6);
    std::memcpy(f.data() + 6, src, 6);
    f[12] = 0x88;
    f[13] = 0xb5;
    for (size_t j = 14; j < f.size(); ++j) f[j] = static_cast<uint8_t>(i * 13 + j);
    frames.push_back(std::move(f));
  }
  return frames;
}

vmm::MachineConfig nic_config() {
  vmm::MachineConfig config;
  config.nic = vmm::NicConfig{};
  return config;
}

class NetRecordReplayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log_path_ = (std::filesystem::temp_directory_path() /
                 ("tandem_net_rr_" + std::to_string(::getpid()) + "_" +
                  ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".log"))
                    .string();
  }
  void TearDown() override { std::filesystem::remove(log_path_); }

  struct Recorded {
    std::string output;
    uint64_t hash = 0;
    vmm::RunResult result;
    std::vector<std::vector<uint8_t>> sent;
    uint64_t frame_digest = 0;
  };
  Recorded record(std::vector<std::vector<uint8_t>> frames, uint64_t max_icount, bool link_down = false) {
    ScriptedConsole console;
    ScriptedNet net(std::move(frames));
    RecorderOptions options;
    options.time = GuestTime::Virtual;
    options.audit_interval = 200'000;
    options.poll_interval = 50'000;
    options.net = &net;
    Recorder recorder(console, options);
    vmm::Machine machine(nic_config(), recorder);
    machine.load(kGuest);
    FileBatchSink sink(log_path_, recorder.make_header(machine, kGuest));
    recorder.begin(machine, sink);
    if (link_down) recorder.set_link(machine, false);
    const vmm::RunResult result = machine.run_until(max_icount);
    recorder.finish(machine, result);
    return {console.output, machine.state_hash(), result, net.sent, recorder.frame_digest()};
  }

  struct Replayed {
    std::string output;
    uint64_t hash = 0;
    std::optional<Divergence> divergence;
    std::vector<std::vector<uint8_t>> sent;
    uint64_t frame_digest = 0;
  };
  Replayed replay(uint64_t max_icount) {
    LogFileReader reader(log_path_);
    FileBatchSource source(reader);
    ScriptedConsole console;
    Replayer replayer(source, &console);
    Replayed out;
    replayer.set_frame_output([&out](uint64_t, std::span<const uint8_t> f) { out.sent.emplace_back(f.begin(), f.end()); });
    vmm::MachineConfig config;
    config.nic = Replayer::recorded_nic(reader.header());  // the NIC comes from the log header
    EXPECT_TRUE(config.nic.has_value());
    vmm::Machine machine(config, replayer);  // no NetPort anywhere
    machine.load(kGuest);
    EXPECT_EQ(Replayer::check_header(reader.header(), machine), "");
    replayer.run(machine, max_icount);
    replayer.flush_output();
    out.output = console.output;
    out.hash = machine.state_hash();
    out.divergence = replayer.divergence();
    out.frame_digest = replayer.frame_digest();
    return out;
  }

  std::string log_path_;
};

TEST_F(NetRecordReplayTest, EchoSessionReplaysWithoutANetwork) {
  const auto frames = client_frames(4);
  const Recorded rec = record(frames, 200'000'000);
  ASSERT_EQ(rec.result.exit, vmm::Exit::GuestPass) << rec.output;
  ASSERT_NE(rec.output.find("link up"), std::string::npos) << rec.output;
  ASSERT_NE(rec.output.find("echoed 4 frames"), std::string::npos) << rec.output;
  // The greeting and four echoes, each addressed back to its sender.
  ASSERT_EQ(rec.sent.size(), 5u);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(rec.sent[i + 1].size(), frames[i].size());
    EXPECT_TRUE(std::equal(frames[i].begin() + 6, frames[i].begin() + 12, rec.sent[i + 1].begin()));
    EXPECT_TRUE(std::equal(frames[i].begin() + 12, frames[i].end(), rec.sent[i + 1].begin() + 12));
  }

  const Replayed rep = replay(200'000'000);
  ASSERT_FALSE(rep.divergence) << rep.divergence->what << " at " << rep.divergence->icount;
  EXPECT_EQ(rep.output, rec.output);
  EXPECT_EQ(rep.sent, rec.sent);
  EXPECT_EQ(rep.frame_digest, rec.frame_digest);
  EXPECT_EQ(rep.hash, rec.hash);
}

TEST_F(NetRecordReplayTest, AChangedFrameInTheLogIsADivergence) {
  ASSERT_EQ(record(client_frames(4), 200'000'000).result.exit, vmm::Exit::GuestPass);
  std::vector<log::LogBatch> batches;
  log::LogHeader header;
  {
    LogFileReader reader(log_path_);
    header = reader.header();
    while (auto b = reader.next()) batches.push_back(*b);
  }
  bool changed = false;
  for (auto& b : batches) {
    for (auto& r : *b.mutable_records()) {
      if (!changed && r.kind() == log::NET_RX) {
        (*r.mutable_payload())[20] ^= 1;
        changed = true;
      }
    }
  }
  ASSERT_TRUE(changed);
  {
    LogFileWriter writer(log_path_, header);
    for (const auto& b : batches) writer.append(b);
  }
  const Replayed rep = replay(200'000'000);
  ASSERT_TRUE(rep.divergence);
}

TEST_F(NetRecordReplayTest, LinkDownIsLoggedAndReplayed) {
  const Recorded rec = record(client_frames(2), 3'000'000, /*link_down=*/true);
  EXPECT_EQ(rec.result.exit, vmm::Exit::Running);
  EXPECT_NE(rec.output.find("link down"), std::string::npos) << rec.output;
  // With the link down the greeting goes nowhere and no frame comes in.
  EXPECT_TRUE(rec.sent.empty());
  EXPECT_EQ(rec.output.find("rx:"), std::string::npos);
  const Replayed rep = replay(3'000'000);
  ASSERT_FALSE(rep.divergence) << rep.divergence->what;
  EXPECT_EQ(rep.output, rec.output);
  EXPECT_EQ(rep.hash, rec.hash);
}

TEST(NetLive, LiveWorldDeliversFramesAndSendsEchoes) {
  ScriptedConsole console;
  ScriptedNet net(client_frames(4));
  Live live(console, {.poll_interval = 50'000, .net = &net});
  vmm::Machine machine(nic_config(), live);
  machine.load(kGuest);
  const vmm::RunResult result = machine.run_until(200'000'000);
  live.flush();
  ASSERT_EQ(result.exit, vmm::Exit::GuestPass) << console.output;
  EXPECT_EQ(net.sent.size(), 5u);
}

TEST(NetLive, FramesWaitForReceiveBuffersInsteadOfBeingDropped) {
  // Before the guest posts its buffers no frame is taken from the port; all arrive later.
  ScriptedConsole console;
  ScriptedNet net(client_frames(4));
  Live live(console, {.poll_interval = 1'000, .net = &net});
  vmm::Machine machine(nic_config(), live);
  machine.load(kGuest);
  ASSERT_EQ(machine.run_until(200'000'000).exit, vmm::Exit::GuestPass) << console.output;
  EXPECT_EQ(machine.board().net()->stats().rx_frames, 4u);
  EXPECT_EQ(machine.board().net()->stats().rx_dropped_not_ready, 0u);
  EXPECT_EQ(machine.board().net()->stats().rx_dropped_no_buffer, 0u);
}

}  // namespace
}  // namespace tandem::hooks

namespace tandem::hooks {
namespace {

using testing::ScriptedConsole;

TEST(WaitConsoleOrNet, WakesForAFrameOnlyWhenTheGuestCanTakeIt) {
  using namespace std::chrono_literals;
  ScriptedConsole closed;  // no input: closed from the start
  ScriptedNet net(client_frames(1));
  EXPECT_TRUE(wait_console_or_net(closed, &net, /*frames_wanted=*/true, 5s));
  // Without a receive buffer the frame does not count: the wait runs its course.
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(wait_console_or_net(closed, &net, /*frames_wanted=*/false, 20ms));
  EXPECT_GE(std::chrono::steady_clock::now() - start, 20ms);
  ScriptedConsole typing("x");
  ScriptedNet empty({});
  EXPECT_TRUE(wait_console_or_net(typing, &empty, true, 5s));
  EXPECT_TRUE(wait_console_or_net(typing, nullptr, false, 5s));
  EXPECT_FALSE(wait_console_or_net(closed, &empty, true, 5ms));
}

}  // namespace
}  // namespace tandem::hooks
