// Privileged architecture: CSR access rules, traps and delegation, xRET, interrupts, WFI,
// counters.
#include "tests/vmm/cpu_test_support.h"

namespace tandem::vmm::test {
namespace {

constexpr uint16_t kMstatus = 0x300, kMisa = 0x301, kMedeleg = 0x302, kMideleg = 0x303,
                   kMie = 0x304, kMtvec = 0x305, kMcounteren = 0x306, kMepc = 0x341,
                   kMcause = 0x342, kMtval = 0x343, kMip = 0x344, kSstatus = 0x100,
                   kSie = 0x104, kStvec = 0x105, kSepc = 0x141, kScause = 0x142,
                   kStval = 0x143, kSip = 0x144, kSatp = 0x180, kMinstret = 0xb02,
                   kInstret = 0xc02, kTime = 0xc01, kCycle = 0xc00, kPmpcfg0 = 0x3a0,
                   kPmpaddr0 = 0x3b0;
constexpr uint64_t kInterrupt = 1ull << 63;
constexpr uint64_t kUserCode = HartTest::kCode + 0x1000;
constexpr uint64_t kSupervisorHandler = HartTest::kCode + 0x2000;

class CpuPrivTest : public HartTest {
 protected:
  void SetUp() override { halt_on_trap(); }
  // Drops to `priv` (0 = U, 1 = S) at `entry` via mret.
  void enter_mode(unsigned priv, uint64_t entry) {
    Program p;
    p.li(t0, 3ull << 11) << rv::csrrc(0, kMstatus, t0);
    p.li(t0, uint64_t{priv} << 11) << rv::csrrs(0, kMstatus, t0);
    p.li(t0, entry) << rv::csrw(kMepc, t0) << rv::kMret;
    load(kSetup, p);
    hart_.set_pc(kSetup);
    const uint64_t icount = hart_.icount();
    // Runs through the mret, then stops (budget): the hart is at `entry` in `priv`.
    ASSERT_EQ(hart_.run(icount + p.size() / 4), HartStop::Budget);
  }
  uint64_t mcause() { return hart_.csr(kMcause); }
};

TEST_F(CpuPrivTest, MachineInformationRegisters) {
  // RV64 with A, C, D, F, I, M, S, U.
  EXPECT_EQ(hart_.csr(kMisa), (2ull << 62) | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 5) |
                                  (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20));
  Program p;
  p << rv::csrr(a0, 0xf11) << rv::csrr(a1, 0xf12) << rv::csrr(a2, 0xf13) << rv::csrr(a3, 0xf14)
    << rv::csrr(a4, 0xf15) << rv::kWfi;
  hart_.set_reg(a0, 99);
  hart_.set_reg(a3, 99);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.pc(), kCode + p.size());
  EXPECT_EQ(hart_.reg(a0), 0u);
  EXPECT_EQ(hart_.reg(a3), 0u);
}

TEST_F(CpuPrivTest, WritingReadOnlyOrUnknownCsrIsIllegal) {
  Program p;
  const uint32_t insn = rv::csrw(0xf11, a0);  // mvendorid is read-only
  p << insn;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
  EXPECT_EQ(hart_.csr(kMtval), insn);
  EXPECT_EQ(hart_.csr(kMepc), kCode);
  EXPECT_EQ(hart_.icount(), 1u) << "a trapping instruction does not retire (1 = the halt WFI)";

  halt_on_trap();
  Program q;
  const uint32_t unknown = rv::csrr(a0, 0x7c0);
  q << unknown;
  ASSERT_EQ(run_program(q), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
  EXPECT_EQ(hart_.csr(kMtval), unknown);

  halt_on_trap();
  Program r;
  r << rv::csrw(0x3a1, a0);  // odd pmpcfg registers do not exist on RV64
  ASSERT_EQ(run_program(r), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
}

TEST_F(CpuPrivTest, MstatusFieldsAreWarl) {
  Program p;
  p.li(t0, ~0ull) << rv::csrw(kMstatus, t0) << rv::csrr(a0, kMstatus) << rv::csrr(a1, kSstatus);
  p.li(t0, 2ull << 11) << rv::csrw(kMstatus, t0) << rv::csrr(a2, kMstatus) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  const uint64_t writable = (1 << 1) | (1 << 3) | (1 << 5) | (1 << 7) | (1 << 8) | (3 << 11) |
                            (3 << 13) | (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20) |
                            (1 << 21) | (1 << 22);
  // UXL = SXL = 64-bit; SD (bit 63) reads 1 because FS = Dirty.
  const uint64_t fixed = (2ull << 32) | (2ull << 34) | (1ull << 63);
  EXPECT_EQ(hart_.reg(a0), writable | fixed);
  EXPECT_EQ(hart_.reg(a1), (1u << 1) | (1u << 5) | (1u << 8) | (3u << 13) | (1u << 18) |
                               (1u << 19) | (2ull << 32) | (1ull << 63));
  // MPP = 2 is reserved: the old MPP (M, from the all-ones write) stays.
  EXPECT_EQ((hart_.reg(a2) >> 11) & 3, 3u);
}

TEST_F(CpuPrivTest, PmpRegistersReadZeroAndIgnoreWrites) {
  // Zero PMP entries: every pmpcfg/pmpaddr field is read-only zero, so OpenSBI's probe
  // (write pmpaddrN, read it back) finds none.
  Program p;
  p.li(t0, 0x1f1f1f1f1f1f1f1full) << rv::csrw(kPmpcfg0, t0) << rv::csrr(a0, kPmpcfg0);
  p << rv::csrw(kPmpcfg0 + 14, t0) << rv::csrr(a2, kPmpcfg0 + 14);
  p.li(t1, 0x123456) << rv::csrw(kPmpaddr0, t1) << rv::csrr(a1, kPmpaddr0);
  p << rv::csrw(kPmpaddr0 + 63, t1) << rv::csrr(a3, kPmpaddr0 + 63) << rv::kWfi;
  hart_.set_reg(a0, 99);
  hart_.set_reg(a1, 99);
  hart_.set_reg(a2, 99);
  hart_.set_reg(a3, 99);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 0u);
  EXPECT_EQ(hart_.reg(a1), 0u);
  EXPECT_EQ(hart_.reg(a2), 0u);
  EXPECT_EQ(hart_.reg(a3), 0u);
  EXPECT_EQ(mcause(), 0u) << "no trap: the registers exist";
}

TEST_F(CpuPrivTest, EnvcfgKeepsOnlyFiom) {
  constexpr uint16_t kMenvcfg = 0x30a, kSenvcfg = 0x10a;
  Program p;
  p.li(t0, ~0ull) << rv::csrw(kMenvcfg, t0) << rv::csrr(a0, kMenvcfg);
  p << rv::csrw(kSenvcfg, t0) << rv::csrr(a1, kSenvcfg);
  p << rv::csrw(kMenvcfg, 0) << rv::csrr(a2, kMenvcfg) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 1u) << "FIOM only: no Zicbo*, Svpbmt or Sstc bits";
  EXPECT_EQ(hart_.reg(a1), 1u);
  EXPECT_EQ(hart_.reg(a2), 0u);

  // senvcfg is an S-mode CSR; menvcfg is not reachable from S.
  halt_on_trap();
  Program sup;
  sup << rv::csrw(kSenvcfg, 0) << rv::csrr(a0, kSenvcfg) << rv::csrr(a1, kMenvcfg);
  load(kUserCode, sup);
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 0u);
  EXPECT_EQ(mcause(), 2u);
  EXPECT_EQ(hart_.csr(kMepc), kUserCode + 8);
}

TEST_F(CpuPrivTest, HpmCountersAndEventsReadZero) {
  Program p;
  p.li(t0, 12345) << rv::csrw(0xb03, t0) << rv::csrr(a0, 0xb03)   // mhpmcounter3
                  << rv::csrw(0xb1f, t0) << rv::csrr(a1, 0xb1f)   // mhpmcounter31
                  << rv::csrw(0x323, t0) << rv::csrr(a2, 0x323)   // mhpmevent3
                  << rv::csrw(0x33f, t0) << rv::csrr(a3, 0x33f)   // mhpmevent31
                  << rv::csrr(a4, 0xc03) << rv::kWfi;              // hpmcounter3
  for (unsigned r : {a0, a1, a2, a3, a4}) hart_.set_reg(r, 99);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  for (unsigned r : {a0, a1, a2, a3, a4}) EXPECT_EQ(hart_.reg(r), 0u) << "x" << r;
  EXPECT_EQ(mcause(), 0u);
}

TEST_F(CpuPrivTest, SupervisorCountersAreGatedByMcounterenOnly) {
  // S reads `time`: illegal while mcounteren.TM is clear, whatever scounteren says.
  halt_on_trap();
  write_csr(0x106, 7);  // scounteren: all three
  Program sup;
  sup << rv::csrr(a0, kTime) << rv::kEcall;
  load(kUserCode, sup);
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
  EXPECT_EQ(hart_.csr(kMtval), rv::csrr(a0, kTime));

  halt_on_trap();
  write_csr(0x106, 0);
  write_csr(kMcounteren, 2);  // TM
  const uint64_t icount = hart_.icount();
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u) << "time read, then ecall from S";
  EXPECT_GE(hart_.reg(a0), clock_.mtime(icount));
  EXPECT_EQ(hart_.reg(a0), clock_.mtime(hart_.icount() - 2));

  // cycle stays gated (CY clear).
  halt_on_trap();
  Program cyc;
  cyc << rv::csrr(a0, kCycle) << rv::kEcall;
  load(kUserCode, cyc);
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
}

TEST_F(CpuPrivTest, MachineModeDrivesStipAndSupervisorCannot) {
  // OpenSBI forwards its timer to S by setting mip.STIP; S sees it in sip only if delegated,
  // and cannot set or clear it itself.
  Program p;
  p.li(t0, kMipSTIP) << rv::csrrs(0, kMip, t0) << rv::csrr(a0, kMip) << rv::csrr(a1, kSip);
  p << rv::csrrs(0, kMideleg, t0) << rv::csrr(a2, kSip) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0) & kMipSTIP, kMipSTIP);
  EXPECT_EQ(hart_.reg(a1) & kMipSTIP, 0u) << "not delegated: hidden from sip";
  EXPECT_EQ(hart_.reg(a2) & kMipSTIP, kMipSTIP);

  halt_on_trap();
  Program sup;
  sup.li(t0, kMipSTIP) << rv::csrrc(0, kSip, t0) << rv::kEcall;
  load(kUserCode, sup);
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(hart_.csr(kMip) & kMipSTIP, kMipSTIP) << "sip.STIP is read-only";
}

TEST_F(CpuPrivTest, EcallFromMachineMode) {
  Program p;
  p << rv::kNop << rv::kEcall;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(mcause(), 11u);
  EXPECT_EQ(hart_.csr(kMepc), kCode + 4);
  EXPECT_EQ(hart_.csr(kMtval), 0u);
  EXPECT_EQ(hart_.privilege(), Privilege::Machine);
  EXPECT_EQ((hart_.csr(kMstatus) >> 11) & 3, 3u) << "MPP records M";
}

TEST_F(CpuPrivTest, EbreakTrapsWithZeroTval) {
  Program p;
  p << rv::kEbreak;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(mcause(), 3u);
  EXPECT_EQ(hart_.csr(kMtval), 0u);
}

TEST_F(CpuPrivTest, MretDropsToUserAndEcallComesBack) {
  Program user;
  user << rv::addi(a0, 0, 42) << rv::kEcall;
  load(kUserCode, user);
  write_csr(kMstatus, (1u << 3) /* MIE */);
  enter_mode(0, kUserCode);
  EXPECT_EQ(hart_.privilege(), Privilege::User);
  EXPECT_EQ(hart_.pc(), kUserCode);
  const uint64_t st = hart_.csr(kMstatus);
  EXPECT_EQ(st & (1u << 3), 0u) << "MIE = MPIE (0 before mret)";
  EXPECT_NE(st & (1u << 7), 0u) << "MPIE = 1 after mret";
  EXPECT_EQ((st >> 11) & 3, 0u) << "MPP = U after mret";
  ASSERT_EQ(hart_.run(hart_.icount() + 100), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 42u);
  EXPECT_EQ(mcause(), 8u);
  EXPECT_EQ(hart_.csr(kMepc), kUserCode + 4);
  EXPECT_EQ(hart_.privilege(), Privilege::Machine);
  EXPECT_EQ((hart_.csr(kMstatus) >> 11) & 3, 0u) << "MPP records U";
}

TEST_F(CpuPrivTest, UserEcallDelegatedToSupervisorAndSretReturns) {
  // S handler: record scause, skip the ecall, sret.
  Program handler;
  handler << rv::csrr(s1, kScause) << rv::csrr(t0, kSepc) << rv::addi(t0, t0, 4)
          << rv::csrw(kSepc, t0) << rv::kSret;
  load(kSupervisorHandler, handler);
  Program user;
  user << rv::kEcall << rv::addi(a0, 0, 7) << rv::kWfi;  // WFI in U-mode is illegal -> M
  load(kUserCode, user);
  write_csr(kMedeleg, 1u << 8);
  write_csr(kStvec, kSupervisorHandler);
  enter_mode(0, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 100), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(s1), 8u);
  EXPECT_EQ(hart_.reg(a0), 7u) << "sret resumed user code after the ecall";
  EXPECT_EQ(hart_.csr(kSepc), kUserCode + 4);
  EXPECT_EQ(mcause(), 2u) << "WFI in U-mode is illegal";
  EXPECT_EQ(hart_.csr(kMepc), kUserCode + 8);
  EXPECT_EQ((hart_.csr(kMstatus) >> 11) & 3, 0u);
}

TEST_F(CpuPrivTest, SupervisorCannotTouchMachineCsrs) {
  Program sup;
  sup << rv::csrr(a0, kMstatus);
  load(kUserCode, sup);
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
  EXPECT_EQ((hart_.csr(kMstatus) >> 11) & 3, 1u) << "MPP records S";
}

TEST_F(CpuPrivTest, TsrTwTvmTrapInSupervisor) {
  struct Case {
    uint64_t mstatus_bit;
    uint32_t insn;
  };
  const Case cases[] = {{1u << 22, rv::kSret}, {1u << 21, rv::kWfi},
                        {1u << 20, rv::csrr(a0, kSatp)}, {1u << 20, rv::sfence_vma(0, 0)}};
  for (const Case& c : cases) {
    halt_on_trap();
    write_csr(kMstatus, c.mstatus_bit);
    Program sup;
    sup << c.insn;
    load(kUserCode, sup);
    enter_mode(1, kUserCode);
    ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
    EXPECT_EQ(mcause(), 2u) << std::hex << c.insn;
    EXPECT_EQ(hart_.csr(kMtval), c.insn);
  }
  // Without the trap bits the same satp read and sfence work in S-mode.
  halt_on_trap();
  write_csr(kMstatus, 0);
  Program ok;
  ok << rv::csrr(a0, kSatp) << rv::sfence_vma(0, 0) << rv::kEcall;
  load(kUserCode, ok);
  enter_mode(1, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 9u);
}

TEST_F(CpuPrivTest, UserCannotUseSretOrSfence) {
  for (uint32_t insn : {rv::kSret, rv::kMret, rv::sfence_vma(0, 0)}) {
    halt_on_trap();
    Program user;
    user << insn;
    load(kUserCode, user);
    enter_mode(0, kUserCode);
    ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
    EXPECT_EQ(mcause(), 2u) << std::hex << insn;
  }
}

TEST_F(CpuPrivTest, TimerInterruptVectoredMode) {
  // Vectored mtvec: interrupt cause 7 lands at base + 28.
  const uint64_t base = kCode + 0x3000;
  write_csr(kMtvec, base | 1);
  write_csr(kMie, kMipMTIP);
  write_csr(kMstatus, 1u << 3);
  Program spin;
  spin << rv::addi(a0, a0, 1) << rv::jal(0, -4);
  load(kCode, spin);
  hart_.set_pc(kCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 50), HartStop::Budget);
  EXPECT_EQ(hart_.reg(a0), 25u);
  hart_.set_interrupt_pending(kMipMTIP, true);
  EXPECT_TRUE(hart_.wfi_wakeup_pending());
  Program landing;
  landing << rv::kWfi;
  ASSERT_TRUE(ram_.write(base + 4 * 7, landing.bytes()));
  const uint64_t before = hart_.icount();
  // Only WFI at the landing slot runs; it is a nop (MTIP is still pending) then jumps on.
  ASSERT_EQ(hart_.run(before + 1), HartStop::Budget);
  EXPECT_EQ(hart_.csr(kMcause), kInterrupt | 7);
  EXPECT_EQ(hart_.pc(), base + 4 * 7 + 4);
  EXPECT_EQ(hart_.csr(kMepc) & ~7ull, kCode) << "interrupted inside the spin loop";
  EXPECT_EQ(hart_.csr(kMstatus) & (1u << 3), 0u) << "MIE cleared on entry";
  EXPECT_NE(hart_.csr(kMstatus) & (1u << 7), 0u) << "MPIE holds the old MIE";
}

TEST_F(CpuPrivTest, InterruptPriorityAndMasking) {
  write_csr(kMie, kMipMTIP | kMipMEIP | kMipMSIP);
  hart_.set_interrupt_pending(kMipMTIP | kMipMSIP | kMipMEIP, true);
  // MIE = 0 in M-mode: nothing is taken.
  Program p;
  p << rv::addi(a0, 0, 1) << rv::addi(a0, a0, 1) << rv::kWfi;
  ASSERT_EQ(run_program(p, 2), HartStop::Budget);
  EXPECT_EQ(hart_.reg(a0), 2u);
  write_csr(kMstatus, 1u << 3);
  hart_.set_pc(kCode);
  hart_.run(hart_.icount() + 1);
  EXPECT_EQ(hart_.csr(kMcause), kInterrupt | 11) << "MEI first";
  hart_.set_interrupt_pending(kMipMEIP, false);
  write_csr(kMstatus, 1u << 3);
  hart_.set_pc(kCode);
  hart_.run(hart_.icount() + 1);
  EXPECT_EQ(hart_.csr(kMcause), kInterrupt | 3) << "then MSI";
  hart_.set_interrupt_pending(kMipMSIP, false);
  write_csr(kMstatus, 1u << 3);
  hart_.set_pc(kCode);
  hart_.run(hart_.icount() + 1);
  EXPECT_EQ(hart_.csr(kMcause), kInterrupt | 7) << "then MTI";
}

TEST_F(CpuPrivTest, DelegatedSupervisorTimerInterruptFromUser) {
  Program handler;
  handler << rv::csrr(s1, kScause) << rv::jal(0, 0);  // spin in S (SIE is now 0)
  load(kSupervisorHandler, handler);
  write_csr(kStvec, kSupervisorHandler);
  write_csr(kMideleg, kMipSTIP);
  write_csr(kMie, kMipSTIP);
  Program user;
  user << rv::addi(a0, a0, 1) << rv::jal(0, -4);
  load(kUserCode, user);
  enter_mode(0, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Budget);
  // U-mode always takes S-level interrupts, whatever SIE says.
  hart_.set_interrupt_pending(kMipSTIP, true);
  ASSERT_EQ(hart_.privilege(), Privilege::User);
  ASSERT_EQ(hart_.run(hart_.icount() + 100), HartStop::Budget);
  EXPECT_EQ(hart_.reg(s1), kInterrupt | 5);
  EXPECT_EQ(hart_.privilege(), Privilege::Supervisor);
  EXPECT_EQ(hart_.csr(kSip) & kMipSTIP, kMipSTIP);
  EXPECT_EQ(hart_.csr(kSie), kMipSTIP);
  EXPECT_EQ(hart_.csr(kMstatus) & (1u << 8), 0u) << "SPP = U";
}

TEST_F(CpuPrivTest, DelegatedInterruptIsNotTakenInMachineMode) {
  write_csr(kMideleg, kMipSTIP);
  write_csr(kMie, kMipSTIP);
  write_csr(kMstatus, (1u << 3) | (1u << 1));
  hart_.set_interrupt_pending(kMipSTIP, true);
  Program p;
  p << rv::addi(a0, 0, 5) << rv::kEcall;
  // The halt WFI does not stop (STIP is pending and enabled in mie), so run on a budget.
  ASSERT_EQ(run_program(p, 100), HartStop::Budget);
  EXPECT_EQ(hart_.reg(a0), 5u);
  EXPECT_EQ(hart_.csr(kMcause), 11u);
}

TEST_F(CpuPrivTest, WfiStopsOnlyWithoutPendingEnabledInterrupt) {
  Program p;
  p << rv::kWfi << rv::addi(a0, 0, 1) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.pc(), kCode + 4) << "WFI retires and advances pc";
  EXPECT_EQ(hart_.icount(), 1u);
  // Pending and enabled in mie (MIE still 0): WFI completes as a nop, no trap.
  write_csr(kMie, kMipMTIP);
  hart_.set_interrupt_pending(kMipMTIP, true);
  EXPECT_TRUE(hart_.wfi_wakeup_pending());
  ASSERT_EQ(hart_.run(hart_.icount() + 2), HartStop::Budget);
  EXPECT_EQ(hart_.reg(a0), 1u);
  EXPECT_EQ(hart_.pc(), kCode + 12);
}

TEST_F(CpuPrivTest, CountersFollowIcountAndCounterenGatesThem) {
  Program p;
  p << rv::kNop << rv::kNop << rv::csrr(a0, kInstret) << rv::csrr(a1, kCycle)
    << rv::csrr(a2, kMinstret);
  p.li(t0, 1000) << rv::csrw(kMinstret, t0) << rv::csrr(a3, kMinstret) << rv::csrr(a4, kTime)
                 << rv::kWfi;
  hart_.set_icount(12345);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 12345u + 2);
  EXPECT_EQ(hart_.reg(a1), 12345u + 3);
  EXPECT_EQ(hart_.reg(a2), 12345u + 4);
  EXPECT_EQ(hart_.reg(a3), 1000u) << "a written minstret reads back, then counts on";
  EXPECT_EQ(hart_.reg(a4), clock_.mtime(12345 + 8));

  // U-mode reading `time` without mcounteren.TM traps; with it, it works.
  halt_on_trap();
  Program user;
  user << rv::csrr(a0, kTime) << rv::kEcall;
  load(kUserCode, user);
  enter_mode(0, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 2u);
  halt_on_trap();
  write_csr(kMcounteren, 2);
  write_csr(0x106, 2);  // scounteren
  enter_mode(0, kUserCode);
  ASSERT_EQ(hart_.run(hart_.icount() + 10), HartStop::Wfi);
  EXPECT_EQ(mcause(), 8u);
}

TEST_F(CpuPrivTest, SatpAcceptsOnlyBareAndSv39) {
  Program p;
  p.li(t0, (9ull << 60) | 0x1234) << rv::csrw(kSatp, t0) << rv::csrr(a0, kSatp);
  p.li(t0, (8ull << 60) | 0x80123) << rv::csrw(kSatp, t0) << rv::csrr(a1, kSatp);
  p << rv::csrw(kSatp, 0) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a0), 0u) << "Sv48 write ignored";
  EXPECT_EQ(hart_.reg(a1), (8ull << 60) | 0x80123);
}

TEST_F(CpuPrivTest, TrapVectorThatFaultsDoesNotHangRun) {
  write_csr(kMtvec, 0x1000);  // nothing there: every fetch faults again
  Program p;
  p << rv::kEcall;
  load(kCode, p);
  hart_.set_pc(kCode);
  EXPECT_EQ(hart_.run(hart_.icount() + 1000), HartStop::Event);
  EXPECT_EQ(hart_.csr(kMcause), 1u);  // instruction access fault
}

}  // namespace
}  // namespace tandem::vmm::test
