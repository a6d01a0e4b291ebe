#pragma once
// Shared helpers for the cpu_*_test.cpp files: a tiny RV64 instruction encoder and a
// fixture with RAM at 0x8000_0000, a bus, a clock and a hart.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/bus.h"
#include "vmm/clock.h"
#include "vmm/cpu/hart.h"
#include "vmm/guest_memory.h"

namespace tandem::vmm::test {

// ---- Encoder (register numbers are plain integers: 10 = a0, ...) ----
namespace rv {
inline uint32_t r_type(uint32_t f7, uint32_t rs2, uint32_t rs1, uint32_t f3, uint32_t rd, uint32_t opc) {
  return f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | opc;
}
inline uint32_t i_type(int32_t imm, uint32_t rs1, uint32_t f3, uint32_t rd, uint32_t opc) {
  return (static_cast<uint32_t>(imm) & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | opc;
}
inline uint32_t s_type(int32_t imm, uint32_t rs2, uint32_t rs1, uint32_t f3, uint32_t opc) {
  const uint32_t u = static_cast<uint32_t>(imm);
  return ((u >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (u & 0x1f) << 7 | opc;
}
inline uint32_t b_type(int32_t imm, uint32_t rs2, uint32_t rs1, uint32_t f3) {
  const uint32_t u = static_cast<uint32_t>(imm);
  return ((u >> 12) & 1) << 31 | ((u >> 5) & 0x3f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 |
         ((u >> 1) & 0xf) << 8 | ((u >> 11) & 1) << 7 | 0x63;
}
inline uint32_t lui(uint32_t rd, int32_t imm20) { return (static_cast<uint32_t>(imm20) << 12) | rd << 7 | 0x37; }
inline uint32_t auipc(uint32_t rd, int32_t imm20) { return (static_cast<uint32_t>(imm20) << 12) | rd << 7 | 0x17; }
inline uint32_t jal(uint32_t rd, int32_t imm) {
  const uint32_t u = static_cast<uint32_t>(imm);
  return ((u >> 20) & 1) << 31 | ((u >> 1) & 0x3ff) << 21 | ((u >> 11) & 1) << 20 |
         ((u >> 12) & 0xff) << 12 | rd << 7 | 0x6f;
}
inline uint32_t jalr(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 0, rd, 0x67); }
inline uint32_t beq(uint32_t a, uint32_t b, int32_t off) { return b_type(off, b, a, 0); }
inline uint32_t bne(uint32_t a, uint32_t b, int32_t off) { return b_type(off, b, a, 1); }
inline uint32_t blt(uint32_t a, uint32_t b, int32_t off) { return b_type(off, b, a, 4); }
inline uint32_t bge(uint32_t a, uint32_t b, int32_t off) { return b_type(off, b, a, 5); }
inline uint32_t bltu(uint32_t a, uint32_t b, int32_t off) { return b_type(off, b, a, 6); }
inline uint32_t bgeu(uint32_t a, uint32_t b, int32_t off) { return b_type(off, b, a, 7); }
inline uint32_t lb(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 0, rd, 0x03); }
inline uint32_t lh(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 1, rd, 0x03); }
inline uint32_t lw(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 2, rd, 0x03); }
inline uint32_t ld(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 3, rd, 0x03); }
inline uint32_t lbu(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 4, rd, 0x03); }
inline uint32_t lhu(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 5, rd, 0x03); }
inline uint32_t lwu(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 6, rd, 0x03); }
inline uint32_t sb(uint32_t rs2, uint32_t rs1, int32_t imm) { return s_type(imm, rs2, rs1, 0, 0x23); }
inline uint32_t sh(uint32_t rs2, uint32_t rs1, int32_t imm) { return s_type(imm, rs2, rs1, 1, 0x23); }
inline uint32_t sw(uint32_t rs2, uint32_t rs1, int32_t imm) { return s_type(imm, rs2, rs1, 2, 0x23); }
inline uint32_t sd(uint32_t rs2, uint32_t rs1, int32_t imm) { return s_type(imm, rs2, rs1, 3, 0x23); }
inline uint32_t addi(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 0, rd, 0x13); }
inline uint32_t slti(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 2, rd, 0x13); }
inline uint32_t sltiu(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 3, rd, 0x13); }
inline uint32_t xori(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 4, rd, 0x13); }
inline uint32_t ori(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 6, rd, 0x13); }
inline uint32_t andi(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 7, rd, 0x13); }
inline uint32_t slli(uint32_t rd, uint32_t rs1, uint32_t sh) { return i_type(static_cast<int32_t>(sh), rs1, 1, rd, 0x13); }
inline uint32_t srli(uint32_t rd, uint32_t rs1, uint32_t sh) { return i_type(static_cast<int32_t>(sh), rs1, 5, rd, 0x13); }
inline uint32_t srai(uint32_t rd, uint32_t rs1, uint32_t sh) { return i_type(static_cast<int32_t>(0x400 | sh), rs1, 5, rd, 0x13); }
inline uint32_t addiw(uint32_t rd, uint32_t rs1, int32_t imm) { return i_type(imm, rs1, 0, rd, 0x1b); }
inline uint32_t slliw(uint32_t rd, uint32_t rs1, uint32_t sh) { return i_type(static_cast<int32_t>(sh), rs1, 1, rd, 0x1b); }
inline uint32_t srliw(uint32_t rd, uint32_t rs1, uint32_t sh) { return i_type(static_cast<int32_t>(sh), rs1, 5, rd, 0x1b); }
inline uint32_t sraiw(uint32_t rd, uint32_t rs1, uint32_t sh) { return i_type(static_cast<int32_t>(0x400 | sh), rs1, 5, rd, 0x1b); }
inline uint32_t op(uint32_t f7, uint32_t f3, uint32_t rd, uint32_t a, uint32_t b) { return r_type(f7, b, a, f3, rd, 0x33); }
inline uint32_t op32(uint32_t f7, uint32_t f3, uint32_t rd, uint32_t a, uint32_t b) { return r_type(f7, b, a, f3, rd, 0x3b); }
inline uint32_t add(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 0, rd, a, b); }
inline uint32_t sub(uint32_t rd, uint32_t a, uint32_t b) { return op(0x20, 0, rd, a, b); }
inline uint32_t sll(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 1, rd, a, b); }
inline uint32_t slt(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 2, rd, a, b); }
inline uint32_t sltu(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 3, rd, a, b); }
inline uint32_t xor_(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 4, rd, a, b); }
inline uint32_t srl(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 5, rd, a, b); }
inline uint32_t sra(uint32_t rd, uint32_t a, uint32_t b) { return op(0x20, 5, rd, a, b); }
inline uint32_t or_(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 6, rd, a, b); }
inline uint32_t and_(uint32_t rd, uint32_t a, uint32_t b) { return op(0, 7, rd, a, b); }
inline uint32_t addw(uint32_t rd, uint32_t a, uint32_t b) { return op32(0, 0, rd, a, b); }
inline uint32_t subw(uint32_t rd, uint32_t a, uint32_t b) { return op32(0x20, 0, rd, a, b); }
inline uint32_t sllw(uint32_t rd, uint32_t a, uint32_t b) { return op32(0, 1, rd, a, b); }
inline uint32_t srlw(uint32_t rd, uint32_t a, uint32_t b) { return op32(0, 5, rd, a, b); }
inline uint32_t sraw(uint32_t rd, uint32_t a, uint32_t b) { return op32(0x20, 5, rd, a, b); }
inline uint32_t mul(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 0, rd, a, b); }
inline uint32_t mulh(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 1, rd, a, b); }
inline uint32_t mulhsu(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 2, rd, a, b); }
inline uint32_t mulhu(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 3, rd, a, b); }
inline uint32_t div(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 4, rd, a, b); }
inline uint32_t divu(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 5, rd, a, b); }
inline uint32_t rem(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 6, rd, a, b); }
inline uint32_t remu(uint32_t rd, uint32_t a, uint32_t b) { return op(1, 7, rd, a, b); }
inline uint32_t mulw(uint32_t rd, uint32_t a, uint32_t b) { return op32(1, 0, rd, a, b); }
inline uint32_t divw(uint32_t rd, uint32_t a, uint32_t b) { return op32(1, 4, rd, a, b); }
inline uint32_t divuw(uint32_t rd, uint32_t a, uint32_t b) { return op32(1, 5, rd, a, b); }
inline uint32_t remw(uint32_t rd, uint32_t a, uint32_t b) { return op32(1, 6, rd, a, b); }
inline uint32_t remuw(uint32_t rd, uint32_t a, uint32_t b) { return op32(1, 7, rd, a, b); }
inline uint32_t csrrw(uint32_t rd, uint32_t csr, uint32_t rs1) { return csr << 20 | rs1 << 15 | 1 << 12 | rd << 7 | 0x73; }
inline uint32_t csrrs(uint32_t rd, uint32_t csr, uint32_t rs1) { return csr << 20 | rs1 << 15 | 2 << 12 | rd << 7 | 0x73; }
inline uint32_t csrrc(uint32_t rd, uint32_t csr, uint32_t rs1) { return csr << 20 | rs1 << 15 | 3 << 12 | rd << 7 | 0x73; }
inline uint32_t csrrwi(uint32_t rd, uint32_t csr, uint32_t imm) { return csr << 20 | imm << 15 | 5 << 12 | rd << 7 | 0x73; }
inline uint32_t csrrsi(uint32_t rd, uint32_t csr, uint32_t imm) { return csr << 20 | imm << 15 | 6 << 12 | rd << 7 | 0x73; }
inline uint32_t csrrci(uint32_t rd, uint32_t csr, uint32_t imm) { return csr << 20 | imm << 15 | 7 << 12 | rd << 7 | 0x73; }
inline uint32_t csrw(uint32_t csr, uint32_t rs1) { return csrrw(0, csr, rs1); }
inline uint32_t csrr(uint32_t rd, uint32_t csr) { return csrrs(rd, csr, 0); }
inline constexpr uint32_t kEcall = 0x00000073, kEbreak = 0x00100073, kSret = 0x10200073,
                          kMret = 0x30200073, kWfi = 0x10500073, kFence = 0x0ff0000f,
                          kFenceI = 0x0000100f, kNop = 0x00000013;
inline uint32_t sfence_vma(uint32_t rs1, uint32_t rs2) { return r_type(0x09, rs2, rs1, 0, 0, 0x73); }
inline uint32_t amo(uint32_t f5, uint32_t f3, uint32_t rd, uint32_t rs1, uint32_t rs2) {
  return r_type(f5 << 2, rs2, rs1, f3, rd, 0x2f);
}
inline uint32_t lr_w(uint32_t rd, uint32_t rs1) { return amo(0x02, 2, rd, rs1, 0); }
inline uint32_t lr_d(uint32_t rd, uint32_t rs1) { return amo(0x02, 3, rd, rs1, 0); }
inline uint32_t sc_w(uint32_t rd, uint32_t rs1, uint32_t rs2) { return amo(0x03, 2, rd, rs1, rs2); }
inline uint32_t sc_d(uint32_t rd, uint32_t rs1, uint32_t rs2) { return amo(0x03, 3, rd, rs1, rs2); }
}  // namespace rv

// Register numbers.
enum : uint32_t { zero = 0, ra = 1, sp = 2, gp = 3, tp = 4, t0 = 5, t1 = 6, t2 = 7, s0 = 8, s1 = 9,
                  a0 = 10, a1 = 11, a2 = 12, a3 = 13, a4 = 14, a5 = 15, a6 = 16, a7 = 17,
                  t3 = 28, t4 = 29, t5 = 30, t6 = 31 };

// Assembles a program: 32-bit and 16-bit parcels in order.
class Program {
 public:
  Program& operator<<(uint32_t insn) {
    for (int i = 0; i < 4; ++i) bytes_.push_back(static_cast<uint8_t>(insn >> (8 * i)));
    return *this;
  }
  Program& c(uint16_t insn) {
    bytes_.push_back(static_cast<uint8_t>(insn));
    bytes_.push_back(static_cast<uint8_t>(insn >> 8));
    return *this;
  }
  // Loads an arbitrary 64-bit constant into rd (lui/addi/slli sequence, clobbers nothing else).
  Program& li(uint32_t rd, uint64_t value) {
    const int64_t v = static_cast<int64_t>(value);
    if (v >= -2048 && v < 2048) return *this << rv::addi(rd, 0, static_cast<int32_t>(v));
    if (v >= INT32_MIN && v <= INT32_MAX) {
      const int32_t lo = static_cast<int32_t>(static_cast<uint32_t>(v) << 20) >> 20;
      const int32_t hi = static_cast<int32_t>((static_cast<uint32_t>(v) - static_cast<uint32_t>(lo)) >> 12);
      *this << rv::lui(rd, hi & 0xfffff);
      if (lo != 0) *this << rv::addiw(rd, rd, lo);
      return *this;
    }
    // Build 64-bit values 11 bits at a time from the top.
    li(rd, static_cast<uint64_t>(v >> 33));
    for (int shift = 22; shift >= 0; shift -= 11) {
      *this << rv::slli(rd, rd, 11);
      const int32_t chunk = static_cast<int32_t>((value >> shift) & 0x7ff);
      if (chunk) *this << rv::ori(rd, rd, chunk);
    }
    return *this;
  }
  size_t size() const { return bytes_.size(); }
  const std::vector<uint8_t>& bytes() const { return bytes_; }

 private:
  std::vector<uint8_t> bytes_;
};

class HartTest : public ::testing::Test {
 public:
  static constexpr uint64_t kRamBase = 0x8000'0000;
  static constexpr uint64_t kRamSize = 16ull << 20;
  static constexpr uint64_t kCode = kRamBase;                  // test programs
  static constexpr uint64_t kHalt = kRamBase + 0xf0'0000;      // "wfi; j halt" trap stop
  static constexpr uint64_t kSetup = kRamBase + 0xf0'1000;     // scratch setup stubs
  static constexpr uint64_t kData = kRamBase + 0x10'0000;

 protected:

  HartTest() : ram_(kRamBase, kRamSize), bus_(ram_), hart_(bus_, clock_) {
    // TANDEM_CPU_ENGINE=jit runs the suite on the translator, translating every block on its
    // first entry (ctest registers the CPU suites a second time that way).
    if (const char* engine = std::getenv("TANDEM_CPU_ENGINE"); engine && std::string(engine) == "jit") {
      hart_.set_engine(CpuEngine::Translator, 1);
    }
    Program halt;
    halt << rv::kWfi << rv::jal(0, -4);
    load(kHalt, halt);
    hart_.reset(kCode);
  }

  void load(uint64_t addr, const Program& p) {
    ASSERT_TRUE(ram_.write(addr, p.bytes()));
  }
  void poke64(uint64_t addr, uint64_t value) {
    ASSERT_TRUE(ram_.write(addr, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), 8)));
  }
  uint64_t peek64(uint64_t addr) {
    uint64_t v = 0;
    EXPECT_TRUE(ram_.read(addr, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), 8)));
    return v;
  }
  // Runs M-mode setup code (e.g. CSR writes; 32-bit instructions only) from a scratch
  // area for exactly its instruction count, then restores pc, the registers and icount, so
  // the test program starts from a clean count.
  void setup(const Program& p) {
    const uint64_t pc = hart_.pc();
    const uint64_t icount = hart_.icount();
    uint64_t saved[32];
    for (unsigned i = 0; i < 32; ++i) saved[i] = hart_.reg(i);
    load(kSetup, p);
    hart_.set_pc(kSetup);
    ASSERT_EQ(hart_.run(icount + p.size() / 4), HartStop::Budget);
    ASSERT_EQ(hart_.pc(), kSetup + p.size()) << "setup code trapped";
    for (unsigned i = 1; i < 32; ++i) hart_.set_reg(i, saved[i]);
    hart_.set_pc(pc);
    hart_.set_icount(icount);
  }
  // Sets a CSR through csrw from M-mode.
  void write_csr(uint16_t csr, uint64_t value) {
    Program p;
    p.li(t6, value) << rv::csrw(csr, t6);
    setup(p);
  }
  // mtvec -> the halt stub, so any unexpected trap ends the run with HartStop::Wfi.
  void halt_on_trap() { write_csr(0x305, kHalt); }

  // Loads `p` at kCode and runs until WFI (or the budget).
  HartStop run_program(const Program& p, uint64_t budget = 1'000'000) {
    load(kCode, p);
    hart_.set_pc(kCode);
    return hart_.run(hart_.icount() + budget);
  }

  GuestMemory ram_;
  Bus bus_;
  VirtualClock clock_;
  Hart hart_;
};

}  // namespace tandem::vmm::test
