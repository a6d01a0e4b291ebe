// Execution machinery: exact budgets inside blocks, LR/SC and AMOs, self-modifying code,
// MMIO stops with exact icount, dirty tracking, and save/restore round trips.
#include <random>
#include <string>

#include "tests/vmm/cpu_test_support.h"

namespace tandem::vmm::test {
namespace {

constexpr uint16_t kMcause = 0x342, kMtval = 0x343, kMscratch = 0x340;

// A device that records accesses and the hart's icount at the time of each.
class FakeDevice : public Device {
 public:
  explicit FakeDevice(const Hart* hart = nullptr) : hart_(hart) {}
  std::string_view name() const override { return "fake"; }
  bool read(uint64_t offset, unsigned size, uint64_t& value) override {
    value = 0x1122334455667788ull >> (8 * (8 - size)) ^ offset;
    if (hart_) seen_icount = hart_->icount();
    ++reads;
    return true;
  }
  bool write(uint64_t offset, unsigned size, uint64_t value) override {
    last_offset = offset;
    last_size = size;
    last_value = value;
    if (hart_) seen_icount = hart_->icount();
    ++writes;
    if (offset == 0x100) stop_bus->request_stop();
    return true;
  }
  void save(StateWriter&) const override {}
  void restore(StateReader&) override {}

  const Hart* hart_;
  Bus* stop_bus = nullptr;
  uint64_t last_offset = 0, last_size = 0, last_value = 0, seen_icount = 0;
  int reads = 0, writes = 0;
};

class CpuExecTest : public HartTest {
 protected:
  void SetUp() override { halt_on_trap(); }
};

TEST_F(CpuExecTest, RunStopsExactlyInsideABlock) {
  Program p;
  for (int i = 0; i < 100; ++i) p << rv::addi(a0, a0, 1);
  p << rv::kWfi;
  load(kCode, p);
  hart_.set_pc(kCode);
  ASSERT_EQ(hart_.run(37), HartStop::Budget);
  EXPECT_EQ(hart_.icount(), 37u);
  EXPECT_EQ(hart_.reg(a0), 37u);
  EXPECT_EQ(hart_.pc(), kCode + 37 * 4);
  ASSERT_EQ(hart_.run(37), HartStop::Budget) << "a zero budget runs nothing";
  EXPECT_EQ(hart_.icount(), 37u);
  ASSERT_EQ(hart_.run(38), HartStop::Budget);
  EXPECT_EQ(hart_.reg(a0), 38u);
  ASSERT_EQ(hart_.run(1000), HartStop::Wfi);
  EXPECT_EQ(hart_.icount(), 101u);
  EXPECT_EQ(hart_.reg(a0), 100u);
}

TEST_F(CpuExecTest, ChoppedRunsMatchOneLongRun) {
  // A loop with loads, stores, branches and compressed instructions.
  Program p;
  p.li(s0, kData).li(a0, 0).li(a1, 500);
  p << rv::sd(a0, s0, 0) << rv::ld(a2, s0, 0);  // loop:
  p.c(0x0505);                                 // c.addi a0, 1
  p << rv::add(a3, a3, a2) << rv::blt(a0, a1, -14) << rv::kWfi;
  auto run_chopped = [&](uint64_t seed) {
    hart_.reset(kCode);
    halt_on_trap();
    load(kCode, p);
    hart_.set_pc(kCode);
    hart_.set_icount(0);
    for (unsigned r = 1; r < 32; ++r) hart_.set_reg(r, 0);
    std::mt19937_64 rng(seed);
    HartStop stop = HartStop::Budget;
    while (stop == HartStop::Budget) {
      stop = hart_.run(hart_.icount() + (seed == 0 ? 1'000'000 : 1 + rng() % 7));
    }
    EXPECT_EQ(stop, HartStop::Wfi);
    return std::make_tuple(hart_.icount(), hart_.reg(a3), hart_.pc());
  };
  const auto whole = run_chopped(0);
  EXPECT_EQ(std::get<1>(whole), 499u * 500 / 2);
  for (uint64_t seed = 1; seed < 4; ++seed) EXPECT_EQ(run_chopped(seed), whole);
}

TEST_F(CpuExecTest, LrScSucceedsOnlyWithMatchingReservation) {
  poke64(kData, 10);
  Program p;
  p.li(s0, kData).li(a5, 20);
  p << rv::lr_d(a0, s0) << rv::sc_d(a1, s0, a5)   // success: a1 = 0, mem = 20
    << rv::sc_d(a2, s0, a5)                       // no reservation: a2 = 1
    << rv::lr_d(a3, s0) << rv::addi(t0, 0, 99) << rv::sd(t0, s0, 0)  // value changed
    << rv::sc_d(a4, s0, a5)                       // fails: memory no longer holds 20
    << rv::lr_w(t1, s0) << rv::sc_w(t2, s0, 0) << rv::addi(s1, s0, 8)
    << rv::lr_d(t3, s0) << rv::sc_d(t4, s1, a5)   // other address: fails
    << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 10u);
  EXPECT_EQ(hart_.reg(a1), 0u);
  EXPECT_EQ(hart_.reg(a2), 1u);
  EXPECT_EQ(hart_.reg(a3), 20u);
  EXPECT_EQ(hart_.reg(a4), 1u);
  EXPECT_EQ(hart_.reg(t2), 0u);
  EXPECT_EQ(hart_.reg(t4), 1u);
  EXPECT_EQ(peek64(kData) & 0xffffffff, 0u);
  EXPECT_EQ(peek64(kData + 8), 0u);
}

TEST_F(CpuExecTest, MisalignedAtomicsTrap) {
  Program p;
  p.li(s0, kData + 4) << rv::lr_d(a0, s0);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.csr(kMcause), 4u);
  EXPECT_EQ(hart_.csr(kMtval), kData + 4);
  halt_on_trap();
  Program q;
  q.li(s0, kData + 2) << rv::amo(0x00, 2, a0, s0, a1);  // amoadd.w
  ASSERT_EQ(run_program(q), HartStop::Wfi);
  EXPECT_EQ(hart_.csr(kMcause), 6u);
  EXPECT_EQ(hart_.csr(kMtval), kData + 2);
}

TEST_F(CpuExecTest, AmosReturnOldValueAndSignExtendWords) {
  poke64(kData, 0x00000000'7fffffffull);
  poke64(kData + 8, 5);
  poke64(kData + 16, 0xf0);
  poke64(kData + 24, 0xffffffff'fffffff0ull);
  Program p;
  p.li(s0, kData).li(a1, 1).li(a2, static_cast<uint64_t>(-3)).li(a3, 0x0f);
  p << rv::amo(0x00, 2, a0, s0, a1)                         // amoadd.w -> 0x80000000
    << rv::lw(t0, s0, 0);
  p << rv::addi(s1, s0, 8) << rv::amo(0x10, 3, a4, s1, a2)  // amomin.d(5, -3) -> -3
    << rv::addi(t2, s0, 16) << rv::amo(0x08, 3, a5, t2, a3)  // amoor.d -> 0xff
    << rv::addi(t3, s0, 24) << rv::amo(0x18, 2, a6, t3, a1)  // amominu.w(0xfffffff0, 1) -> 1
    << rv::amo(0x01, 3, a7, s0, a3)                          // amoswap.d
    << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 0x7fffffffu);
  EXPECT_EQ(hart_.reg(t0), 0xffffffff80000000ull) << "lw of the new word";
  EXPECT_EQ(hart_.reg(a4), 5u);
  EXPECT_EQ(peek64(kData + 8), static_cast<uint64_t>(-3));
  EXPECT_EQ(hart_.reg(a5), 0xf0u);
  EXPECT_EQ(peek64(kData + 16), 0xffu);
  EXPECT_EQ(hart_.reg(a6), 0xfffffffffffffff0ull) << "amo .w results are sign-extended";
  EXPECT_EQ(peek64(kData + 24), 0xffffffff'00000001ull);
  EXPECT_EQ(hart_.reg(a7), 0x80000000u) << "amoswap.d returned the whole doubleword";
  EXPECT_EQ(peek64(kData), 0x0fu);
}

TEST_F(CpuExecTest, SelfModifyingCodeIsSeenAfterFenceI) {
  // The body's "addi a0, a0, 1" is rewritten to "addi a0, a0, 100" between two calls.
  const uint32_t replacement = rv::addi(a0, a0, 100);
  Program body;
  body << rv::addi(a0, a0, 1) << rv::jalr(0, ra, 0);
  // Build: call body twice (second time after the rewrite).
  Program q;
  q.li(s0, kCode + 0x100).li(t1, replacement);
  const int32_t call1 = static_cast<int32_t>(0x100 - q.size());
  q << rv::jal(ra, call1) << rv::sw(t1, s0, 0) << rv::kFenceI;
  const int32_t call2 = static_cast<int32_t>(0x100 - q.size());
  q << rv::jal(ra, call2) << rv::kWfi;
  load(kCode, q);
  ASSERT_TRUE(ram_.write(kCode + 0x100, body.bytes()));
  hart_.set_pc(kCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 1000), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 101u);
}

TEST_F(CpuExecTest, StoreIntoTheRunningBlockTakesEffectImmediately) {
  // The store rewrites the very next instruction; our store invalidates decoded code.
  Program p;
  p.li(s0, 0).li(t1, rv::addi(a0, 0, 2));
  p << rv::auipc(s0, 0) << rv::sw(t1, s0, 8) << rv::addi(a0, 0, 1) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 2u);
}

TEST_F(CpuExecTest, DmaWriteToCodeBetweenRunsIsSeen) {
  Program p;
  p << rv::addi(a0, 0, 1) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 1u);
  Program q;
  q << rv::addi(a0, 0, 2);
  ASSERT_TRUE(ram_.write(kCode, q.bytes()));  // the device/loader path
  hart_.set_pc(kCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 2u);
}

TEST_F(CpuExecTest, MmioStoreEndsRunWithExactIcount) {
  FakeDevice dev(&hart_);
  dev.stop_bus = &bus_;
  bus_.map(0x1000'0000, 0x1000, dev);
  Program p;
  p.li(s0, 0x1000'0000).li(a0, 0xabcd);
  const uint64_t before_store = p.size() / 4;
  p << rv::sh(a0, s0, 0x12) << rv::addi(a1, 0, 1) << rv::addi(a1, a1, 1) << rv::kWfi;
  load(kCode, p);
  hart_.set_pc(kCode);
  ASSERT_EQ(hart_.run(1000), HartStop::Event);
  EXPECT_EQ(dev.writes, 1);
  EXPECT_EQ(dev.last_offset, 0x12u);
  EXPECT_EQ(dev.last_size, 2u);
  EXPECT_EQ(dev.last_value, 0xabcdu);
  EXPECT_EQ(dev.seen_icount, before_store) << "the device sees the icount before the store";
  EXPECT_EQ(hart_.icount(), before_store + 1) << "the store retired, nothing after it";
  EXPECT_EQ(hart_.pc(), kCode + 4 * (before_store + 1));
  ASSERT_EQ(hart_.run(1000), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1), 2u);
}

TEST_F(CpuExecTest, MmioLoadReturnsDeviceValueAndBusStopRequestEndsRun) {
  FakeDevice dev(&hart_);
  dev.stop_bus = &bus_;
  bus_.map(0x1000'0000, 0x1000, dev);
  Program p;
  p.li(s0, 0x1000'0000);
  p << rv::lw(a0, s0, 4) << rv::sb(a0, s0, 0x100) << rv::addi(a1, 0, 1) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Event);
  EXPECT_EQ(hart_.reg(a0), 0x11223344u ^ 4);  // FakeDevice::read, sign-extended (positive)
  EXPECT_TRUE(bus_.stop_requested());
  EXPECT_EQ(hart_.run(hart_.icount() + 100), HartStop::Event) << "stays stopped until cleared";
  EXPECT_EQ(hart_.reg(a1), 0u);
  bus_.clear_stop();
  EXPECT_EQ(hart_.run(hart_.icount() + 100), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1), 1u);
}

TEST_F(CpuExecTest, StoresMarkPagesDirtyAgainAfterTheBitmapIsTaken) {
  Program p;
  p.li(s0, kData + 3 * kPageSize);
  p << rv::sd(a0, s0, 0) << rv::kWfi;
  load(kCode, p);
  (void)ram_.take_dirty_bitmap();
  const uint64_t page = (kData + 3 * kPageSize - kRamBase) >> kPageShift;
  for (int round = 0; round < 3; ++round) {
    hart_.set_pc(kCode);
    ASSERT_EQ(hart_.run(hart_.icount() + 100), HartStop::Wfi);
    const auto bitmap = ram_.take_dirty_bitmap();
    EXPECT_TRUE((bitmap[page / 64] >> (page % 64)) & 1) << "round " << round;
  }
}

class VectorSink : public StateSink {
 public:
  void write(const void* data, size_t len) override {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + len);
  }
  std::vector<uint8_t> bytes;
};
class VectorSource : public StateSource {
 public:
  explicit VectorSource(const std::vector<uint8_t>& b) : bytes(b) {}
  void read(void* data, size_t len) override {
    if (len > bytes.size() - pos) throw StateError("truncated");
    std::memcpy(data, bytes.data() + pos, len);
    pos += len;
  }
  const std::vector<uint8_t>& bytes;
  size_t pos = 0;
};

TEST_F(CpuExecTest, SaveRestoreRoundTripContinuesIdentically) {
  Program p;
  p.li(s0, kData).li(a1, 3000);
  p << rv::csrw(kMscratch, a1);
  p << rv::lr_d(a2, s0) << rv::addi(a0, a0, 3) << rv::mul(a3, a0, a0) << rv::sd(a3, s0, 8)
    << rv::addi(a1, a1, -1) << rv::bne(a1, 0, -20) << rv::kWfi;
  load(kCode, p);
  hart_.set_pc(kCode);
  ASSERT_EQ(hart_.run(1234), HartStop::Budget);
  VectorSink sink;
  StateWriter writer(sink);
  hart_.save(writer);
  std::vector<uint8_t> memory(kRamSize);
  ASSERT_TRUE(ram_.read(kRamBase, memory));

  ASSERT_EQ(hart_.run(100000), HartStop::Wfi);
  const uint64_t end_icount = hart_.icount();
  const uint64_t end_a0 = hart_.reg(a0), end_a3 = hart_.reg(a3);

  // A fresh hart over restored memory continues the same way.
  GuestMemory ram2(kRamBase, kRamSize);
  ASSERT_TRUE(ram2.write(kRamBase, memory));
  Bus bus2(ram2);
  Hart hart2(bus2, clock_);
  VectorSource source(sink.bytes);
  StateReader reader(source);
  hart2.restore(reader);
  EXPECT_EQ(hart2.icount(), 1234u);
  EXPECT_EQ(hart2.csr(kMscratch), 3000u);
  ASSERT_EQ(hart2.run(100000), HartStop::Wfi);
  EXPECT_EQ(hart2.icount(), end_icount);
  EXPECT_EQ(hart2.reg(a0), end_a0);
  EXPECT_EQ(hart2.reg(a3), end_a3);
  EXPECT_EQ(hart2.pc(), hart_.pc());

  // And a snapshot that is cut short is refused, not half-applied.
  std::vector<uint8_t> truncated(sink.bytes.begin(), sink.bytes.begin() + 20);
  VectorSource short_source(truncated);
  StateReader short_reader(short_source);
  EXPECT_THROW(hart2.restore(short_reader), StateError);
  EXPECT_EQ(hart2.icount(), end_icount);

  // So is one with an impossible privilege level (2 is reserved).
  std::vector<uint8_t> corrupt = sink.bytes;
  const size_t priv_offset = 4 + 8 + 33 * 8 + 8 + 8;  // tag, version, regs, pc, icount
  ASSERT_EQ(corrupt[priv_offset], 3u) << "layout changed: the hart was in M-mode";
  corrupt[priv_offset] = 2;
  VectorSource corrupt_source(corrupt);
  StateReader corrupt_reader(corrupt_source);
  EXPECT_THROW(hart2.restore(corrupt_reader), StateError);
  EXPECT_EQ(hart2.icount(), end_icount);
}

}  // namespace
}  // namespace tandem::vmm::test
