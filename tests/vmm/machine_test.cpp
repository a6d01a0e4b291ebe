// The Machine: exact stops, guest exits through the finisher, console output through the
// World, WFI idling with the timer, determinism across different slicing, save/restore
// round trips, refused corrupt snapshots, and the dirty bitmap.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "tests/vmm/rv_asm.h"
#include "vmm/cpu/hart.h"
#include "vmm/machine.h"

namespace tandem::vmm {
namespace {

using namespace testing;  // rv_asm registers

// A scripted, deterministic World: services on a fixed grid, idles by skipping to the
// deadline (or gives up without one), records console output.
struct ScriptWorld : World {
  explicit ScriptWorld(uint64_t period = 1000) : period(period) {}
  uint64_t next_service_icount(uint64_t now) override { return (now / period + 1) * period; }
  void service(Machine&) override { ++services; }
  bool idle(Machine& m, uint64_t deadline) override {
    ++idles;
    if (deadline == UINT64_MAX) return false;
    const uint64_t now = m.clock().mtime(m.icount());
    m.clock().advance(deadline > now ? deadline - now : 0);
    return true;
  }
  void output(OutputChannel, uint64_t icount, std::span<const uint8_t> bytes) override {
    for (uint8_t byte : bytes) printed.emplace_back(icount, byte);
  }
  void entropy(uint64_t, std::span<uint8_t> out) override { std::fill(out.begin(), out.end(), 0); }

  uint64_t period;
  int services = 0;
  int idles = 0;
  std::vector<std::pair<uint64_t, uint8_t>> printed;
};

class MachineTest : public ::testing::Test {
 protected:
  MachineTest() {
    dir = std::filesystem::temp_directory_path() / ("tandem_machine_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  ~MachineTest() override { std::filesystem::remove_all(dir); }

  std::string image(const std::string& name, const RvAsm& code) {
    const auto path = (dir / name).string();
    const auto bytes = code.bytes();
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return path;
  }
  // Counts in t1 forever, storing the count at 0x80010000.
  std::string counter_image() {
    RvAsm a;
    a.auipc(t0, 0x10);
    a.addi(t1, t1, 1);
    a.sd(t1, t0, 0);
    a.j(-8);
    return image("counter.bin", a);
  }
  static void finish(RvAsm& a, int32_t value) {
    a.li(t0, 0x100000);
    a.li(t1, value);
    a.sw(t1, t0, 0);
    a.j(0);
  }
  static MachineConfig small() {
    MachineConfig c;
    c.mem_bytes = 16 << 20;
    return c;
  }

  std::filesystem::path dir;
};

TEST_F(MachineTest, RunUntilStopsAtExactlyTheTarget) {
  ScriptWorld world(97);
  Machine m(small(), world);
  m.load(counter_image());
  for (uint64_t target : {1u, 2u, 1001u, 5000u, 5003u}) {
    const RunResult r = m.run_until(target);
    EXPECT_EQ(r.exit, Exit::Running);
    EXPECT_EQ(r.icount, target);
    EXPECT_EQ(m.icount(), target);
  }
  EXPECT_GT(world.services, 40);  // service points on the 97-grid were honoured
}

TEST_F(MachineTest, ServicePointIsServedWhenReachedEvenAtTheTarget) {
  ScriptWorld world(1000);
  Machine m(small(), world);
  m.load(counter_image());
  m.run_until(999);
  EXPECT_EQ(world.services, 0);
  m.run_until(1000);
  EXPECT_EQ(world.services, 1);
  m.run_until(1000);  // already there: no second service
  EXPECT_EQ(world.services, 1);
  m.run_until(3500);
  EXPECT_EQ(world.services, 3);
}

TEST_F(MachineTest, LoadPassesHartIdAndDeviceTree) {
  ScriptWorld world;
  Machine m(small(), world);
  m.load(counter_image());
  EXPECT_EQ(m.hart().pc(), 0x80000000u);
  EXPECT_EQ(m.hart().reg(a0), 0u);
  const uint64_t dtb = m.hart().reg(a1);
  EXPECT_EQ(dtb, 0x80000000u + (16 << 20) - 0x10000);
  uint8_t magic[4];
  ASSERT_TRUE(m.memory().read(dtb, magic));
  EXPECT_EQ(magic[0], 0xd0);  // FDT magic 0xd00dfeed, big-endian
  EXPECT_EQ(magic[3], 0xed);
  EXPECT_EQ(m.hart().privilege(), Privilege::Machine);
}

TEST_F(MachineTest, FinisherPassAndFailEndTheRun) {
  {
    ScriptWorld world;
    Machine m(small(), world);
    RvAsm a;
    finish(a, 0x5555);
    m.load(image("pass.bin", a));
    const RunResult r = m.run_until(UINT64_MAX);
    EXPECT_EQ(r.exit, Exit::GuestPass);
    EXPECT_LT(r.icount, 10u);
    EXPECT_EQ(m.run_until(UINT64_MAX).exit, Exit::GuestPass);  // sticky
  }
  {
    ScriptWorld world;
    Machine m(small(), world);
    RvAsm a;
    finish(a, (3 << 16) | 0x3333);
    m.load(image("fail.bin", a));
    const RunResult r = m.run_until(UINT64_MAX);
    EXPECT_EQ(r.exit, Exit::GuestFail);
    EXPECT_EQ(r.code, 3u);
  }
  {
    ScriptWorld world;
    Machine m(small(), world);
    RvAsm a;
    finish(a, 0x7777);
    m.load(image("reset.bin", a));
    EXPECT_EQ(m.run_until(UINT64_MAX).exit, Exit::Reset);
  }
}

TEST_F(MachineTest, UartOutputReachesTheWorldInOrderWithIcounts) {
  ScriptWorld world;
  Machine m(small(), world);
  RvAsm a;
  a.li(t0, 0x10000000);
  a.li(t1, 'h');
  a.sb(t1, t0, 0);
  a.li(t1, 'i');
  a.sb(t1, t0, 0);
  finish(a, 0x5555);
  m.load(image("uart.bin", a));
  EXPECT_EQ(m.run_until(UINT64_MAX).exit, Exit::GuestPass);
  ASSERT_EQ(world.printed.size(), 2u);
  EXPECT_EQ(world.printed[0].second, 'h');
  EXPECT_EQ(world.printed[1].second, 'i');
  EXPECT_LT(world.printed[0].first, world.printed[1].first);
}

TEST_F(MachineTest, WfiWithTimerIdlesToTheDeadlineInsteadOfSpinning) {
  ScriptWorld world;
  Machine m(small(), world);
  RvAsm a;
  a.li(t0, 0x2004000);  // mtimecmp
  a.li(t1, 50000);      // 5 ms of guest time: 5M instructions if we spun
  a.sd(t1, t0, 0);
  a.li(t1, 0x80);  // mie.MTIE (mstatus.MIE stays 0: WFI wakes, no trap)
  a.csrw(0x304, t1);
  a.wfi();
  finish(a, 0x5555);
  m.load(image("timer.bin", a));
  const RunResult r = m.run_until(UINT64_MAX);
  EXPECT_EQ(r.exit, Exit::GuestPass);
  EXPECT_EQ(world.idles, 1);
  EXPECT_LT(r.icount, 100u);
  EXPECT_GE(m.clock().mtime(m.icount()), 50000u);
  EXPECT_EQ(m.next_timer_deadline(), 50000u);
  EXPECT_TRUE(m.hart().mip() & kMipMTIP);
}

TEST_F(MachineTest, WfiWithNothingToWaitForEndsIdle) {
  ScriptWorld world;
  Machine m(small(), world);
  RvAsm a;
  a.wfi();
  a.j(-4);
  m.load(image("sleep.bin", a));
  const RunResult r = m.run_until(UINT64_MAX);
  EXPECT_EQ(r.exit, Exit::Idle);
  EXPECT_EQ(world.idles, 1);
}

TEST_F(MachineTest, TrapVectorThatFaultsEndsTheRunInsteadOfSpinning) {
  ScriptWorld world;
  Machine m(small(), world);
  RvAsm a;
  a.csrw(0x305, zero);  // mtvec = 0: nothing is mapped there
  a.wfi();              // placeholder, replaced below by an illegal instruction
  auto bytes = a.bytes();
  std::memset(bytes.data() + 4, 0, 4);  // 0x00000000 is illegal
  const auto path = (dir / "stuck.bin").string();
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  m.load(path);
  const RunResult r = m.run_until(1'000'000'000);
  EXPECT_EQ(r.exit, Exit::Idle);
  EXPECT_EQ(r.icount, 1u);  // only the csrw retired
}

TEST_F(MachineTest, LoadPassesOpenSbiDynamicInfoInA2) {
  ScriptWorld world;
  Machine m(small(), world);
  m.load(counter_image());
  const uint64_t info = m.hart().reg(12);
  ASSERT_NE(info, 0u);
  uint64_t words[4];
  ASSERT_TRUE(m.memory().read(info, {reinterpret_cast<uint8_t*>(words), sizeof words}));
  EXPECT_EQ(words[0], 0x4942534fu);  // magic
  EXPECT_EQ(words[1], 2u);           // version
  EXPECT_EQ(words[2], 0x80200000u);  // next stage
  EXPECT_EQ(words[3], 1u);           // S-mode
}

TEST_F(MachineTest, SameImageGivesSameHashWhateverTheSlicing) {
  ScriptWorld w1(1000), w2(37);
  Machine m1(small(), w1), m2(small(), w2);
  const auto img = counter_image();
  m1.load(img);
  m2.load(img);
  EXPECT_EQ(m1.state_hash(), m2.state_hash());
  for (uint64_t target : {10'000u, 33'333u, 100'000u}) {
    m1.run_until(target);
    m2.run_until(target);
    EXPECT_EQ(m1.state_hash(), m2.state_hash()) << "at icount " << target;
  }
  const uint64_t h = m1.state_hash();
  m1.run_until(100'001);
  EXPECT_NE(m1.state_hash(), h);  // the hash does see progress
}

TEST_F(MachineTest, SaveRestoreRoundTripContinuesIdentically) {
  ScriptWorld w1, w2;
  Machine original(small(), w1);
  original.load(counter_image());
  original.run_until(12'345);
  std::stringstream snapshot;
  original.save(snapshot);
  const std::string bytes = snapshot.str();

  Machine copy(small(), w2);
  copy.restore(snapshot);
  EXPECT_EQ(copy.icount(), 12'345u);
  EXPECT_EQ(copy.state_hash(), original.state_hash());
  original.run_until(40'000);
  copy.run_until(40'000);
  EXPECT_EQ(copy.state_hash(), original.state_hash());
  // The snapshot holds the touched pages only, not all 16 MiB.
  EXPECT_LT(bytes.size(), 64u * 1024);
}

TEST_F(MachineTest, StateHashIsTheHashOfWhatSaveWrites) {
  ScriptWorld w1, w2;
  Machine a(small(), w1), b(small(), w2);
  a.load(counter_image());
  a.run_until(777);
  std::stringstream s1;
  a.save(s1);
  b.restore(s1);
  std::stringstream s2;
  b.save(s2);
  EXPECT_EQ(s1.str(), s2.str());
  EXPECT_EQ(a.state_hash(), b.state_hash());
}

struct StringSink : StateSink {
  std::string bytes;
  void write(const void* d, size_t n) override { bytes.append(static_cast<const char*>(d), n); }
};
struct StringSource : StateSource {
  const std::string& bytes;
  size_t pos = 0;
  explicit StringSource(const std::string& b) : bytes(b) {}
  void read(void* d, size_t n) override {
    if (n > bytes.size() - pos) throw StateError("truncated");
    std::memcpy(d, bytes.data() + pos, n);
    pos += n;
  }
};

TEST_F(MachineTest, StateHashCoversFpRegisters) {
  ScriptWorld w;
  Machine m(small(), w);
  m.load(counter_image());
  const uint64_t before = m.state_hash();
  m.hart().set_freg(7, 0x400921fb54442d18);
  const uint64_t with_freg = m.state_hash();
  EXPECT_NE(with_freg, before);
  m.hart().set_freg(7, 0);
  EXPECT_EQ(m.state_hash(), before);
}

TEST_F(MachineTest, PreFpSnapshotIsRefusedWithItsVersion) {
  ScriptWorld w1, w2;
  Machine a(small(), w1), b(small(), w2);
  a.load(counter_image());
  a.run_until(100);
  StringSink core;
  StateWriter cw(core);
  a.save_core(cw);
  ASSERT_EQ(Machine::kSnapshotVersion, 4u) << "4 = the hart has F and D";
  const uint32_t old_version = 3;
  core.bytes.replace(4, 4, reinterpret_cast<const char*>(&old_version), 4);
  StringSource src(core.bytes);
  StateReader r(src);
  try {
    b.restore_core(r);
    FAIL() << "a version-3 snapshot was accepted";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("version 3 is not supported"), std::string::npos) << e.what();
  }
}

TEST_F(MachineTest, CoreStateIsThePrefixOfTheSnapshotAndRestoresWithCopiedRam) {
  ScriptWorld w1, w2;
  Machine a(small(), w1), b(small(), w2);
  a.load(counter_image());
  a.run_until(4321);
  StringSink core, whole;
  StateWriter cw(core), ww(whole);
  a.save_core(cw);
  a.save(ww);
  ASSERT_LT(core.bytes.size(), whole.bytes.size());
  EXPECT_EQ(whole.bytes.compare(0, core.bytes.size(), core.bytes), 0);

  // RAM travels separately (as checkpoint/ does it), then the core state.
  for (uint64_t p = 0; p < a.memory().page_count(); ++p) {
    if (!a.memory().page_touched(p)) continue;
    const uint64_t addr = a.memory().base() + (p << kPageShift);
    b.memory().write(addr, {a.memory().host(addr), kPageSize});
  }
  StringSource src(core.bytes);
  StateReader r(src);
  b.restore_core(r);
  EXPECT_EQ(src.pos, core.bytes.size());
  EXPECT_EQ(b.state_hash(), a.state_hash());
  a.run_until(9000);
  b.run_until(9000);
  EXPECT_EQ(b.state_hash(), a.state_hash());
}

TEST_F(MachineTest, TruncatedOrGarbageSnapshotsAreRefused) {
  ScriptWorld w1;
  Machine a(small(), w1);
  a.load(counter_image());
  a.run_until(500);
  std::stringstream s;
  a.save(s);
  const std::string bytes = s.str();
  for (size_t cut : {size_t{0}, size_t{3}, size_t{20}, bytes.size() / 2, bytes.size() - 1}) {
    ScriptWorld w;
    Machine m(small(), w);
    std::stringstream in(bytes.substr(0, cut));
    EXPECT_THROW(m.restore(in), StateError) << "cut at " << cut;
  }
  std::string garbage(bytes.size(), '\x5a');
  {
    ScriptWorld w;
    Machine m(small(), w);
    std::stringstream in(garbage);
    EXPECT_THROW(m.restore(in), StateError);
  }
  // Corrupt a RAM page index: refused, not written out of bounds.
  std::string bad_page = bytes;
  const size_t ram_tag = bad_page.rfind("RAM ");
  ASSERT_NE(ram_tag, std::string::npos);
  bad_page[ram_tag + 4 + 7] = '\x7f';
  {
    ScriptWorld w;
    Machine m(small(), w);
    std::stringstream in(bad_page);
    EXPECT_THROW(m.restore(in), StateError);
  }
}

TEST_F(MachineTest, SnapshotOfAnotherMemorySizeIsRefusedWithAHint) {
  ScriptWorld w1, w2;
  Machine a(small(), w1);
  a.load(counter_image());
  std::stringstream s;
  a.save(s);
  MachineConfig big = small();
  big.mem_bytes = 32 << 20;
  Machine b(big, w2);
  try {
    b.restore(s);
    FAIL() << "restored a 16 MiB snapshot into 32 MiB";
  } catch (const StateError& e) {
    EXPECT_NE(std::string(e.what()).find("--mem 16"), std::string::npos) << e.what();
  }
}

TEST_F(MachineTest, DirtyBitmapReportsWrittenPagesAndClears) {
  ScriptWorld world;
  Machine m(small(), world);
  m.load(counter_image());
  m.take_dirty_bitmap();  // forget the loader's writes
  m.run_until(100);
  const auto bitmap = m.take_dirty_bitmap();
  const uint64_t page = 0x10000 >> 12;  // 0x80010000
  ASSERT_GT(bitmap.size(), page / 64);
  for (size_t w = 0; w < bitmap.size(); ++w) {
    const uint64_t expected = w == page / 64 ? uint64_t{1} << (page % 64) : 0;
    EXPECT_EQ(bitmap[w], expected) << "word " << w;
  }
  for (uint64_t word : m.take_dirty_bitmap()) EXPECT_EQ(word, 0u);
}

TEST_F(MachineTest, BadImageIsALoadError) {
  ScriptWorld world;
  Machine m(small(), world);
  EXPECT_THROW(m.load((dir / "missing.elf").string()), LoadError);
  // A raw image reaching into the device tree's slot at the top of RAM.
  const auto path = (dir / "huge.bin").string();
  std::vector<char> big((16 << 20) - 100, 0);
  std::ofstream(path, std::ios::binary).write(big.data(), big.size());
  EXPECT_THROW(m.load(path), LoadError);
}

}  // namespace
}  // namespace tandem::vmm
