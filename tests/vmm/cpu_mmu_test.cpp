// Sv39 translation: walks, superpages, A/D updates, permission faults with the right cause
// and tval, SUM/MXR/MPRV, SFENCE.VMA, and access faults on unbacked physical addresses.
#include "tests/vmm/cpu_test_support.h"

namespace tandem::vmm::test {
namespace {

constexpr uint16_t kMstatus = 0x300, kMedeleg = 0x302, kMepc = 0x341, kMcause = 0x342,
                   kMtval = 0x343, kSatp = 0x180;
constexpr uint64_t kV = 1, kR = 2, kW = 4, kX = 8, kU = 16, kA = 64, kD = 128;
constexpr uint64_t kSum = 1u << 18, kMxr = 1u << 19, kMprv = 1u << 17;

class CpuMmuTest : public HartTest {
 protected:
  static constexpr uint64_t kTables = kRamBase + 0x40'0000;  // page-table pool
  static constexpr uint64_t kRoot = kTables;
  static constexpr uint64_t kCodeVa = 0x0000'0000'1000'0000;  // where S/U code runs
  static constexpr uint64_t kDataVa = 0x0000'0000'2000'0000;
  static constexpr uint64_t kDataPa = kRamBase + 0x20'0000;

  void SetUp() override {
    halt_on_trap();
    next_table_ = kTables + kPageSize;
    // Code page: kCodeVa -> kCode, RX for S (U bit off).
    map(kCodeVa, kCode, kR | kX | kA);
  }

  uint64_t pte_address(uint64_t va, int level) {
    uint64_t table = kRoot;
    for (int l = 2; l > level; --l) {
      const uint64_t pte_addr = table + ((va >> (12 + 9 * l)) & 511) * 8;
      uint64_t pte = peek64(pte_addr);
      if (!(pte & kV)) {
        pte = ((next_table_ >> 12) << 10) | kV;
        next_table_ += kPageSize;
        poke64(pte_addr, pte);
      }
      table = ((pte >> 10) << 12);
    }
    return table + ((va >> (12 + 9 * level)) & 511) * 8;
  }
  // Maps one page of the given level (0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB).
  void map(uint64_t va, uint64_t pa, uint64_t flags, int level = 0) {
    poke64(pte_address(va, level), ((pa >> 12) << 10) | flags | kV);
  }

  // Enables Sv39 and drops to `priv` at `entry`, then runs until the halt (any trap to M).
  HartStop run_translated(unsigned priv, uint64_t entry, uint64_t extra_mstatus = 0,
                          uint64_t budget = 1000) {
    Program p;
    p.li(t0, (8ull << 60) | (kRoot >> 12)) << rv::csrw(kSatp, t0);
    p.li(t0, (uint64_t{priv} << 11) | extra_mstatus) << rv::csrw(kMstatus, t0);
    p.li(t0, entry) << rv::csrw(kMepc, t0) << rv::kMret;
    load(kSetup, p);
    hart_.set_pc(kSetup);
    return hart_.run(hart_.icount() + budget);
  }
  // Code at kCode (mapped at kCodeVa) that does `body` then ecalls.
  void code(Program body) {
    body << rv::kEcall;
    load(kCode, body);
  }
  uint64_t mcause() { return hart_.csr(kMcause); }

  uint64_t next_table_ = 0;
};

TEST_F(CpuMmuTest, LoadThroughFourKilobytePageSetsAccessedBit) {
  map(kDataVa, kDataPa, kR | kW);
  poke64(kDataPa + 8, 0xfeedface);
  Program p;
  p.li(s0, kDataVa) << rv::ld(a0, s0, 8);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u) << "ecall from S, no fault before it";
  EXPECT_EQ(hart_.reg(a0), 0xfeedfaceu);
  const uint64_t pte = peek64(pte_address(kDataVa, 0));
  EXPECT_TRUE(pte & kA);
  EXPECT_FALSE(pte & kD) << "a load does not set D";
}

TEST_F(CpuMmuTest, StoreSetsDirtyBit) {
  map(kDataVa, kDataPa, kR | kW);
  Program p;
  p.li(s0, kDataVa).li(a1, 77) << rv::sd(a1, s0, 16);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u);
  EXPECT_EQ(peek64(kDataPa + 16), 77u);
  const uint64_t pte = peek64(pte_address(kDataVa, 0));
  EXPECT_TRUE(pte & kA);
  EXPECT_TRUE(pte & kD);
}

TEST_F(CpuMmuTest, UnmappedLoadAndReadOnlyStorePageFault) {
  map(kDataVa, kDataPa, kR);
  Program p;
  p.li(s0, kDataVa + 0x5008) << rv::ld(a0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 13u);
  EXPECT_EQ(hart_.csr(kMtval), kDataVa + 0x5008);

  halt_on_trap();
  Program q;
  q.li(s0, kDataVa + 0x10) << rv::sw(a0, s0, 0);
  code(q);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 15u);
  EXPECT_EQ(hart_.csr(kMtval), kDataVa + 0x10);
  EXPECT_FALSE(peek64(pte_address(kDataVa, 0)) & kD);
}

TEST_F(CpuMmuTest, FetchFromNonExecutablePageFaults) {
  map(kDataVa, kDataPa, kR | kW);
  Program p;
  p.li(s0, kDataVa + 0x40) << rv::jalr(0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 12u);
  EXPECT_EQ(hart_.csr(kMtval), kDataVa + 0x40);
  EXPECT_EQ(hart_.csr(kMepc), kDataVa + 0x40);
}

TEST_F(CpuMmuTest, NonCanonicalAddressFaults) {
  Program p;
  p.li(s0, 0x0000'0040'0000'0000ull) << rv::ld(a0, s0, 0);  // bit 38 = 0, bit 39 = 1
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 13u);
  EXPECT_EQ(hart_.csr(kMtval), 0x0000'0040'0000'0000ull);
}

TEST_F(CpuMmuTest, SupervisorNeedsSumForUserPages) {
  map(kDataVa, kDataPa, kR | kW | kU);
  poke64(kDataPa, 5);
  Program p;
  p.li(s0, kDataVa) << rv::ld(a0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 13u) << "S load from a U page without SUM";
  halt_on_trap();
  ASSERT_EQ(run_translated(1, kCodeVa, kSum), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u);
  EXPECT_EQ(hart_.reg(a0), 5u);
}

TEST_F(CpuMmuTest, SupervisorNeverExecutesUserPagesEvenWithSum) {
  map(kDataVa, kCode, kR | kX | kU);
  Program p;
  p.li(s0, kDataVa) << rv::jalr(0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa, kSum), HartStop::Wfi);
  EXPECT_EQ(mcause(), 12u);
}

TEST_F(CpuMmuTest, UserCannotTouchSupervisorPages) {
  map(kCodeVa, kCode, kR | kX | kU | kA);  // user code
  map(kDataVa, kDataPa, kR | kW);          // supervisor data
  Program p;
  p.li(s0, kDataVa) << rv::ld(a0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(0, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 13u);
  EXPECT_EQ(hart_.privilege(), Privilege::Machine);
  EXPECT_EQ((hart_.csr(kMstatus) >> 11) & 3, 0u);
}

TEST_F(CpuMmuTest, MxrMakesExecuteOnlyPagesReadable) {
  map(kDataVa, kDataPa, kX);
  poke64(kDataPa, 0x1234);
  Program p;
  p.li(s0, kDataVa) << rv::ld(a0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 13u);
  halt_on_trap();
  ASSERT_EQ(run_translated(1, kCodeVa, kMxr), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u);
  EXPECT_EQ(hart_.reg(a0), 0x1234u);
}

TEST_F(CpuMmuTest, MegapageAndGigapageTranslate) {
  map(0x4000'0000, kRamBase, kR | kW, /*level=*/2);         // 1 GiB
  map(0x0060'0000, kDataPa & ~0x1f'ffffull, kR | kW, 1);   // 2 MiB
  poke64(kRamBase + 0x12'3450, 0xabc);
  poke64((kDataPa & ~0x1f'ffffull) + 0x1'0008, 0xdef);
  Program p;
  p.li(s0, 0x4012'3450) << rv::ld(a0, s0, 0);
  p.li(s1, 0x0061'0008) << rv::ld(a1, s1, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u);
  EXPECT_EQ(hart_.reg(a0), 0xabcu);
  EXPECT_EQ(hart_.reg(a1), 0xdefu);
}

TEST_F(CpuMmuTest, MisalignedSuperpageFaults) {
  map(0x0060'0000, kDataPa + kPageSize, kR | kW, 1);  // PPN not 2 MiB aligned
  Program p;
  p.li(s0, 0x0060'0000) << rv::ld(a0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 13u);
  EXPECT_EQ(hart_.csr(kMtval), 0x0060'0000u);
}

TEST_F(CpuMmuTest, PageFaultsCanBeDelegatedToSupervisor) {
  write_csr(kMedeleg, 1u << 13);
  write_csr(0x105, kCodeVa + 0x100);  // stvec (inside the mapped code page)
  Program handler;
  handler << rv::csrr(a2, 0x142) << rv::csrr(a3, 0x143) << rv::kEcall;
  ASSERT_TRUE(ram_.write(kCode + 0x100, handler.bytes()));
  Program p;
  p.li(s0, kDataVa + 0x18) << rv::ld(a0, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a2), 13u);
  EXPECT_EQ(hart_.reg(a3), kDataVa + 0x18);
  EXPECT_EQ(mcause(), 9u);
}

TEST_F(CpuMmuTest, MprvTranslatesMachineDataAccesses) {
  map(kDataVa, kDataPa, kR | kW);
  poke64(kDataPa, 0x99);
  // M-mode code (running bare at kCode) with MPRV = 1, MPP = S.
  Program p;
  p.li(t0, (8ull << 60) | (kRoot >> 12)) << rv::csrw(kSatp, t0);
  p.li(t0, kMprv | (1u << 11)) << rv::csrw(kMstatus, t0);
  p.li(s0, kDataVa) << rv::ld(a0, s0, 0) << rv::kEbreak;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(mcause(), 3u);
  EXPECT_EQ(hart_.reg(a0), 0x99u);
}

TEST_F(CpuMmuTest, SfenceVmaMakesNewMappingVisible) {
  map(kDataVa, kDataPa, kR | kW);
  poke64(kDataPa, 1);
  poke64(kDataPa + kPageSize, 2);
  Program p;
  p.li(s0, kDataVa) << rv::ld(a0, s0, 0);
  // Remap kDataVa -> kDataPa + 4 KiB by rewriting the leaf PTE (its PA is known), then
  // sfence.vma and load again.
  const uint64_t leaf = pte_address(kDataVa, 0);
  map(0x3000'0000, leaf & ~0xfffull, kR | kW);  // make the leaf table writable from S
  p.li(s1, 0x3000'0000 + (leaf & 0xfff)).li(t1, (((kDataPa + kPageSize) >> 12) << 10) | kR | kW | kV | kA)
      << rv::sd(t1, s1, 0) << rv::sfence_vma(0, 0) << rv::ld(a1, s0, 0);
  code(p);
  ASSERT_EQ(run_translated(1, kCodeVa), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u);
  EXPECT_EQ(hart_.reg(a0), 1u);
  EXPECT_EQ(hart_.reg(a1), 2u);
}

TEST_F(CpuMmuTest, UnbackedPhysicalAddressesRaiseAccessFaults) {
  Program p;
  p.li(s0, 0x4000'0000) << rv::ld(a0, s0, 0);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(mcause(), 5u);
  EXPECT_EQ(hart_.csr(kMtval), 0x4000'0000u);
  halt_on_trap();
  Program q;
  q.li(s0, 0x4000'0000) << rv::sd(a0, s0, 8);
  ASSERT_EQ(run_program(q), HartStop::Wfi);
  EXPECT_EQ(mcause(), 7u);
  EXPECT_EQ(hart_.csr(kMtval), 0x4000'0008u);
  halt_on_trap();
  Program r;
  r.li(s0, 0x4000'0000) << rv::jalr(0, s0, 0);
  ASSERT_EQ(run_program(r), HartStop::Wfi);
  EXPECT_EQ(mcause(), 1u);
  EXPECT_EQ(hart_.csr(kMtval), 0x4000'0000u);
  // Past the end of RAM, too.
  halt_on_trap();
  Program s;
  s.li(s0, kRamBase + kRamSize - 4) << rv::ld(a0, s0, 0);  // straddles the end of RAM
  ASSERT_EQ(run_program(s), HartStop::Wfi);
  EXPECT_EQ(mcause(), 5u);
}

TEST_F(CpuMmuTest, PageTableOutsideRamIsAnAccessFault) {
  Program p;
  p.li(t0, (8ull << 60) | (0x4000'0000ull >> 12)) << rv::csrw(kSatp, t0);
  p.li(t0, kMprv | (1u << 11)) << rv::csrw(kMstatus, t0);
  p.li(s0, kDataVa) << rv::ld(a0, s0, 0);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(mcause(), 5u);
}

}  // namespace
}  // namespace tandem::vmm::test
