// The Live World against a scripted console: input respects the UART's free space and is
// never lost, idle skips to the timer deadline without sleeping, idle without a deadline
// ends when input is closed, output reaches the console.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>

#include "tests/vmm/rv_asm.h"
#include "vmm-hooks/live.h"
#include "vmm/devices/uart16550.h"
#include "vmm/machine.h"

namespace tandem::hooks {
namespace {

struct ScriptConsole : ConsolePort {
  std::deque<uint8_t> input;
  bool closed = false;
  std::string output;
  int waits = 0;
  size_t read_input(std::vector<uint8_t>& out, size_t max) override {
    size_t n = 0;
    while (n < max && !input.empty()) {
      out.push_back(input.front());
      input.pop_front();
      ++n;
    }
    return n;
  }
  bool wait_input(std::chrono::nanoseconds) override {
    ++waits;
    return !input.empty();
  }
  bool input_closed() const override { return closed && input.empty(); }
  void write_output(std::span<const uint8_t> bytes) override { output.append(bytes.begin(), bytes.end()); }
};

class LiveTest : public ::testing::Test {
 protected:
  LiveTest() : live(console, {.poll_interval = 1000}), machine(config(), live) {
    path = std::filesystem::temp_directory_path() / ("tandem_live_test_" + std::to_string(::getpid()) + ".bin");
    vmm::testing::RvAsm a;
    a.j(0);  // spin
    const auto bytes = a.bytes();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    machine.load(path.string());
  }
  ~LiveTest() override { std::filesystem::remove(path); }
  static vmm::MachineConfig config() {
    vmm::MachineConfig c;
    c.mem_bytes = 8 << 20;
    return c;
  }

  ScriptConsole console;
  Live live;
  vmm::Machine machine;
  std::filesystem::path path;
};

TEST_F(LiveTest, ServicePointsAreOnAFixedGrid) {
  EXPECT_EQ(live.next_service_icount(0), 1000u);
  EXPECT_EQ(live.next_service_icount(999), 1000u);
  EXPECT_EQ(live.next_service_icount(1000), 2000u);
}

TEST_F(LiveTest, InputBeyondFifoSpaceWaitsInsteadOfBeingDropped) {
  const size_t total = vmm::Uart16550::kRxFifoBytes + 100;
  for (size_t i = 0; i < total; ++i) console.input.push_back(static_cast<uint8_t>(i));
  live.service(machine);
  EXPECT_EQ(machine.console_input_space(), 0u);
  // Drain the FIFO as the guest would, then the rest arrives at the next service point.
  auto& uart = machine.board().uart();
  uint64_t v = 0;
  for (size_t i = 0; i < vmm::Uart16550::kRxFifoBytes; ++i) {
    uart.read(vmm::Uart16550::kRbrThrDll, 1, v);
    EXPECT_EQ(v, i % 256);
  }
  live.service(machine);
  for (size_t i = vmm::Uart16550::kRxFifoBytes; i < total; ++i) {
    uart.read(vmm::Uart16550::kRbrThrDll, 1, v);
    EXPECT_EQ(v, i % 256) << "byte " << i;
  }
}

TEST_F(LiveTest, IdleWithDeadlineSkipsTheClockWithoutSleeping) {
  const auto start = std::chrono::steady_clock::now();
  const uint64_t deadline = machine.clock().mtime(machine.icount()) + 100'000'000;  // 10 s of guest time
  EXPECT_TRUE(live.idle(machine, deadline));
  EXPECT_EQ(machine.clock().mtime(machine.icount()), deadline);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_EQ(console.waits, 0);
}

TEST_F(LiveTest, IdleWithoutDeadlineDeliversInputOrGivesUpAtEof) {
  console.input = {'x'};
  EXPECT_TRUE(live.idle(machine, UINT64_MAX));
  EXPECT_EQ(machine.console_input_space(), vmm::Uart16550::kRxFifoBytes - 1);
  console.closed = true;
  EXPECT_FALSE(live.idle(machine, UINT64_MAX));
}

TEST_F(LiveTest, OutputReachesTheConsole) {
  live.console_output(5, 'o');
  live.console_output(6, 'k');
  EXPECT_EQ(console.output, "ok");
}

TEST_F(LiveTest, EntropyFillsTheBuffer) {
  std::vector<uint8_t> a(64, 0), b(64, 0);
  live.entropy(0, a);
  live.entropy(0, b);
  EXPECT_NE(a, b);  // 2^-512 chance of a false failure
}

}  // namespace
}  // namespace tandem::hooks
