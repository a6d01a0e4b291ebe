// RV64IMC instruction semantics: ALU, shifts, W forms, M edge cases, loads/stores,
// branches/jumps and the compressed encodings.
#include "tests/vmm/cpu_test_support.h"

namespace tandem::vmm::test {
namespace {

class CpuIsaTest : public HartTest {
 protected:
  void SetUp() override { halt_on_trap(); }
  // Runs `p` followed by WFI and expects it to end there with no trap.
  void run_ok(Program p) {
    p << rv::kWfi;
    ASSERT_EQ(run_program(p), HartStop::Wfi);
    ASSERT_EQ(hart_.pc(), kCode + p.size()) << "program trapped, mcause=" << hart_.csr(0x342);
  }
};

TEST_F(CpuIsaTest, AddiAndLuiBuildConstants) {
  Program p;
  p.li(a0, 0x123456789abcdef0ull).li(a1, 0xffffffff80000000ull).li(a2, 0x7fffffff).li(a3, -5);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a0), 0x123456789abcdef0ull);
  EXPECT_EQ(hart_.reg(a1), 0xffffffff80000000ull);
  EXPECT_EQ(hart_.reg(a2), 0x7fffffffull);
  EXPECT_EQ(hart_.reg(a3), static_cast<uint64_t>(-5));
}

TEST_F(CpuIsaTest, WritesToX0AreDiscarded) {
  Program p;
  p << rv::addi(0, 0, 5) << rv::lui(0, 0x12345) << rv::add(a0, 0, 0);
  run_ok(p);
  EXPECT_EQ(hart_.reg(0), 0u);
  EXPECT_EQ(hart_.reg(a0), 0u);
}

TEST_F(CpuIsaTest, ArithmeticAndLogic) {
  Program p;
  p.li(a0, 100).li(a1, static_cast<uint64_t>(-7));
  p << rv::add(a2, a0, a1) << rv::sub(a3, a0, a1) << rv::slt(a4, a1, a0) << rv::sltu(a5, a1, a0)
    << rv::xor_(a6, a0, a1) << rv::or_(a7, a0, a1) << rv::and_(t0, a0, a1)
    << rv::slti(t1, a1, -6) << rv::sltiu(t2, a0, -1) << rv::xori(t3, a0, -1)
    << rv::andi(t4, a1, 0xff) << rv::ori(t5, a0, 0x7ff);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a2), 93u);
  EXPECT_EQ(hart_.reg(a3), 107u);
  EXPECT_EQ(hart_.reg(a4), 1u);
  EXPECT_EQ(hart_.reg(a5), 0u);  // -7 is huge unsigned
  EXPECT_EQ(hart_.reg(a6), 100ull ^ static_cast<uint64_t>(-7));
  EXPECT_EQ(hart_.reg(a7), 100ull | static_cast<uint64_t>(-7));
  EXPECT_EQ(hart_.reg(t0), 100ull & static_cast<uint64_t>(-7));
  EXPECT_EQ(hart_.reg(t1), 1u);
  EXPECT_EQ(hart_.reg(t2), 1u);  // sltiu compares with the sign-extended immediate
  EXPECT_EQ(hart_.reg(t3), ~100ull);
  EXPECT_EQ(hart_.reg(t4), 0xf9u);
  EXPECT_EQ(hart_.reg(t5), 0x7ffu);
}

TEST_F(CpuIsaTest, ShiftsUseSixBitsAndWFormsFiveBits) {
  Program p;
  p.li(a0, 0x8000000000000001ull).li(a1, 63 + 64).li(a2, 0x80000001u).li(a3, 31 + 32);
  p << rv::sll(a4, a0, a1)      // shift by 127 -> by 63
    << rv::srl(a5, a0, a1) << rv::sra(a6, a0, a1) << rv::slli(a7, a0, 63) << rv::srai(t0, a0, 63)
    << rv::srli(t1, a0, 63) << rv::sllw(t2, a2, a3)  // by 31
    << rv::srlw(t3, a2, a3) << rv::sraw(t4, a2, a3) << rv::sraiw(t5, a2, 31) << rv::srliw(s0, a2, 31)
    << rv::slliw(s1, a2, 31);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a4), 0x8000000000000000ull);
  EXPECT_EQ(hart_.reg(a5), 1u);
  EXPECT_EQ(hart_.reg(a6), ~0ull);
  EXPECT_EQ(hart_.reg(a7), 0x8000000000000000ull);
  EXPECT_EQ(hart_.reg(t0), ~0ull);
  EXPECT_EQ(hart_.reg(t1), 1u);
  EXPECT_EQ(hart_.reg(t2), 0xffffffff80000000ull);
  EXPECT_EQ(hart_.reg(t3), 1u);
  EXPECT_EQ(hart_.reg(t4), ~0ull);
  EXPECT_EQ(hart_.reg(t5), ~0ull);
  EXPECT_EQ(hart_.reg(s0), 1u);
  EXPECT_EQ(hart_.reg(s1), 0xffffffff80000000ull);
}

TEST_F(CpuIsaTest, WordOpsSignExtend) {
  Program p;
  p.li(a0, 0x7fffffff).li(a1, 1).li(a2, 0x1234567800000000ull);
  p << rv::addw(a3, a0, a1) << rv::subw(a4, 0, a1) << rv::addiw(a5, a0, 1) << rv::addiw(a6, a2, 0)
    << rv::mulw(a7, a0, a0);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a3), 0xffffffff80000000ull);
  EXPECT_EQ(hart_.reg(a4), ~0ull);
  EXPECT_EQ(hart_.reg(a5), 0xffffffff80000000ull);
  EXPECT_EQ(hart_.reg(a6), 0u);
  EXPECT_EQ(hart_.reg(a7), 1u);  // 0x7fffffff^2 = 0x3fffffff00000001
}

TEST_F(CpuIsaTest, MultiplyHighForms) {
  Program p;
  p.li(a0, static_cast<uint64_t>(-2)).li(a1, 3);
  p << rv::mul(a2, a0, a1) << rv::mulh(a3, a0, a1) << rv::mulhu(a4, a0, a1) << rv::mulhsu(a5, a0, a1)
    << rv::mulhsu(a6, a1, a0);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a2), static_cast<uint64_t>(-6));
  EXPECT_EQ(hart_.reg(a3), ~0ull);  // high half of -6
  EXPECT_EQ(hart_.reg(a4), 2u);     // (2^64-2)*3 >> 64
  EXPECT_EQ(hart_.reg(a5), ~0ull);  // signed -2 * unsigned 3
  EXPECT_EQ(hart_.reg(a6), 2u);     // signed 3 * unsigned (2^64-2)
}

TEST_F(CpuIsaTest, DivisionByZeroAndOverflow) {
  Program p;
  p.li(a0, 0x8000000000000000ull).li(a1, static_cast<uint64_t>(-1)).li(a2, 7);
  p << rv::div(s0, a2, 0) << rv::divu(s1, a2, 0) << rv::rem(t0, a2, 0) << rv::remu(t1, a2, 0)
    << rv::div(t2, a0, a1) << rv::rem(t3, a0, a1);
  p.li(a3, 0xffffffff80000000ull);
  p << rv::divw(t4, a3, a1) << rv::remw(t5, a3, a1) << rv::divw(a4, a2, 0) << rv::divuw(a5, a2, 0)
    << rv::remw(a6, a3, 0) << rv::remuw(a7, a3, 0);
  run_ok(p);
  EXPECT_EQ(hart_.reg(s0), ~0ull);
  EXPECT_EQ(hart_.reg(s1), ~0ull);
  EXPECT_EQ(hart_.reg(t0), 7u);
  EXPECT_EQ(hart_.reg(t1), 7u);
  EXPECT_EQ(hart_.reg(t2), 0x8000000000000000ull);
  EXPECT_EQ(hart_.reg(t3), 0u);
  EXPECT_EQ(hart_.reg(t4), 0xffffffff80000000ull);
  EXPECT_EQ(hart_.reg(t5), 0u);
  EXPECT_EQ(hart_.reg(a4), ~0ull);
  EXPECT_EQ(hart_.reg(a5), ~0ull);
  EXPECT_EQ(hart_.reg(a6), 0xffffffff80000000ull);
  EXPECT_EQ(hart_.reg(a7), 0xffffffff80000000ull);
}

TEST_F(CpuIsaTest, SignedAndUnsignedDivision) {
  Program p;
  p.li(a0, static_cast<uint64_t>(-7)).li(a1, 2);
  p << rv::div(a2, a0, a1) << rv::rem(a3, a0, a1) << rv::divu(a4, a0, a1) << rv::remu(a5, a0, a1)
    << rv::divuw(a6, a0, a1) << rv::remw(a7, a0, a1);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a2), static_cast<uint64_t>(-3));
  EXPECT_EQ(hart_.reg(a3), static_cast<uint64_t>(-1));
  EXPECT_EQ(hart_.reg(a4), static_cast<uint64_t>(-7) / 2);
  EXPECT_EQ(hart_.reg(a5), 1u);
  EXPECT_EQ(hart_.reg(a6), 0x7ffffffcull);  // 0xfffffff9 / 2, sign-extended from 32 bits
  EXPECT_EQ(hart_.reg(a7), static_cast<uint64_t>(-1));
}

TEST_F(CpuIsaTest, LoadsExtendAndStoresTruncate) {
  Program p;
  p.li(s0, kData).li(a0, 0x8899aabbccddeeffull);
  p << rv::sd(a0, s0, 0) << rv::lb(a1, s0, 0) << rv::lbu(a2, s0, 0) << rv::lh(a3, s0, 0)
    << rv::lhu(a4, s0, 0) << rv::lw(a5, s0, 4) << rv::lwu(a6, s0, 4) << rv::ld(a7, s0, 0)
    << rv::sb(a0, s0, 8) << rv::sh(a0, s0, 16) << rv::sw(a0, s0, 24);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a1), 0xffffffffffffffffull);
  EXPECT_EQ(hart_.reg(a2), 0xffu);
  EXPECT_EQ(hart_.reg(a3), 0xffffffffffffeeffull);
  EXPECT_EQ(hart_.reg(a4), 0xeeffu);
  EXPECT_EQ(hart_.reg(a5), 0xffffffff8899aabbull);
  EXPECT_EQ(hart_.reg(a6), 0x8899aabbull);
  EXPECT_EQ(hart_.reg(a7), 0x8899aabbccddeeffull);
  EXPECT_EQ(peek64(kData + 8), 0xffu);
  EXPECT_EQ(peek64(kData + 16), 0xeeffu);
  EXPECT_EQ(peek64(kData + 24), 0xccddeeffu);
}

TEST_F(CpuIsaTest, MisalignedLoadsAndStoresWorkLikeQemu) {
  Program p;
  p.li(s0, kData + 0xffd).li(a0, 0x1122334455667788ull);  // crosses a page boundary
  p << rv::sd(a0, s0, 0) << rv::ld(a1, s0, 0) << rv::lw(a2, s0, 1) << rv::lhu(a3, s0, 3);
  run_ok(p);
  EXPECT_EQ(hart_.reg(a1), 0x1122334455667788ull);
  EXPECT_EQ(hart_.reg(a2), 0x44556677u);
  EXPECT_EQ(hart_.reg(a3), 0x4455u);
}

TEST_F(CpuIsaTest, BranchesTakenAndNotTaken) {
  // Each branch skips an "addi a0, a0, 1" when taken; a0 counts the not-taken ones.
  Program p;
  p.li(a1, static_cast<uint64_t>(-1)).li(a2, 1).li(a0, 0);
  auto both = [&](uint32_t taken, uint32_t not_taken) {
    p << taken << rv::addi(a0, a0, 100) << not_taken << rv::addi(a0, a0, 1);
  };
  both(rv::beq(a2, a2, 8), rv::beq(a1, a2, 8));
  both(rv::bne(a1, a2, 8), rv::bne(a2, a2, 8));
  both(rv::blt(a1, a2, 8), rv::blt(a2, a1, 8));
  both(rv::bge(a2, a1, 8), rv::bge(a1, a2, 8));
  both(rv::bltu(a2, a1, 8), rv::bltu(a1, a2, 8));
  both(rv::bgeu(a1, a2, 8), rv::bgeu(a2, a1, 8));
  run_ok(p);
  EXPECT_EQ(hart_.reg(a0), 6u);
}

TEST_F(CpuIsaTest, JalAndJalrLinkAndClearBitZero) {
  Program p;
  p << rv::jal(ra, 8)            // 0: -> 8, ra = 4
    << rv::kEbreak               // 4
    << rv::auipc(a0, 0)          // 8: a0 = kCode + 8
    << rv::addi(a0, a0, 17)      // 12: a0 = kCode + 25 (odd)
    << rv::jalr(a1, a0, 0)       // 16: -> kCode + 24, a1 = kCode + 20
    << rv::kEbreak               // 20
    << rv::kWfi;                 // 24
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.pc(), kCode + 28);
  EXPECT_EQ(hart_.reg(ra), kCode + 4);
  EXPECT_EQ(hart_.reg(a1), kCode + 20);
  EXPECT_EQ(hart_.icount(), 5u);  // jal, auipc, addi, jalr, wfi
}

TEST_F(CpuIsaTest, CompressedForms) {
  Program p;
  p.li(sp, kData + 0x100);
  p.c(0x4529)    // c.li a0, 10
      .c(0x0505)  // c.addi a0, 1          -> 11
      .c(0x65c1)  // c.lui a1, 0x10         -> 0x10000
      .c(0x2505)  // c.addiw a0, 1          -> 12
      .c(0x7179)  // c.addi16sp sp, -48
      .c(0x0030)  // c.addi4spn a2, sp, 8   -> a2 = sp + 8
      .c(0xe42a)  // c.sdsp a0, 8(sp)
      .c(0x66a2)  // c.ldsp a3, 8(sp)
      .c(0x872e)  // c.mv a4, a1
      .c(0x973a)  // c.add a4, a4 (0x10000 -> 0x20000)
      .c(0x8305)  // c.srli a4, 1    -> 0x10000
      .c(0x8b85)  // c.andi a5, 1 (a5 = 0)
      .c(0x0782)  // c.slli a5, 32 (a5 = 0)
      .c(0x8d0d)  // c.sub a0, a1 -> 12 - 0x10000
      .c(0x9d2d)  // c.addw a0, a1 -> 12
      .c(0x4601); // c.li a2, 0
  run_ok(p);
  EXPECT_EQ(hart_.reg(a0), 12u);
  EXPECT_EQ(hart_.reg(a1), 0x10000u);
  EXPECT_EQ(hart_.reg(sp), kData + 0x100 - 48);
  EXPECT_EQ(hart_.reg(a3), 12u);
  EXPECT_EQ(hart_.reg(a4), 0x10000u);
  EXPECT_EQ(peek64(kData + 0x100 - 48 + 8), 12u);
}

TEST_F(CpuIsaTest, CompressedJumpsAndBranches) {
  Program p;
  p.c(0x4501)    // 0: c.li a0, 0
      .c(0xc119) // 2: c.beqz a0, +6 -> 8
      .c(0x0505) // 4: c.addi a0, 1 (skipped)
      .c(0x0505) // 6: c.addi a0, 1 (skipped)
      .c(0xe111) // 8: c.bnez a0, +4 (not taken)
      .c(0xa011) // 10: c.j +4 -> 14
      .c(0x9002) // 12: c.ebreak (skipped)
      .c(0x0509) // 14: c.addi a0, 2
      ;
  run_ok(p);
  EXPECT_EQ(hart_.reg(a0), 2u);
}

TEST_F(CpuIsaTest, CompressedReservedEncodingsAreIllegal) {
  write_csr(0x305, kHalt);
  Program p;
  p.c(0x0000);  // all-zero parcel is defined illegal
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.csr(0x342), 2u);
  EXPECT_EQ(hart_.csr(0x343), 0u);
  EXPECT_EQ(hart_.csr(0x341), kCode);
  Program q;
  q.c(0x2001);  // c.addiw x0 (reserved in RV64)
  ASSERT_EQ(run_program(q), HartStop::Wfi);
  EXPECT_EQ(hart_.csr(0x342), 2u);
  EXPECT_EQ(hart_.csr(0x343), 0x2001u);
}

}  // namespace
}  // namespace tandem::vmm::test
