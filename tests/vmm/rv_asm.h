#pragma once
// A tiny RV64 encoder for test programs, so machine and tool tests can build raw guest
// images without a cross toolchain. Only the handful of instructions the tests use.
#include <cstdint>
#include <cstring>
#include <vector>

namespace tandem::vmm::testing {

enum Reg : uint32_t { zero = 0, ra = 1, sp = 2, t0 = 5, t1 = 6, t2 = 7, a0 = 10, a1 = 11 };

class RvAsm {
 public:
  // Label-free: branch/jump offsets are in bytes relative to the instruction.
  void addi(Reg rd, Reg rs1, int32_t imm) { i_type(imm, rs1, 0, rd, 0x13); }
  void lui(Reg rd, uint32_t imm20) { emit((imm20 << 12) | (rd << 7) | 0x37); }
  void auipc(Reg rd, uint32_t imm20) { emit((imm20 << 12) | (rd << 7) | 0x17); }
  void sb(Reg rs2, Reg rs1, int32_t imm) { s_type(imm, rs2, rs1, 0); }
  void sh(Reg rs2, Reg rs1, int32_t imm) { s_type(imm, rs2, rs1, 1); }
  void sw(Reg rs2, Reg rs1, int32_t imm) { s_type(imm, rs2, rs1, 2); }
  void sd(Reg rs2, Reg rs1, int32_t imm) { s_type(imm, rs2, rs1, 3); }
  void ld(Reg rd, Reg rs1, int32_t imm) { i_type(imm, rs1, 3, rd, 0x03); }
  void csrw(uint32_t csr, Reg rs1) { emit((csr << 20) | (rs1 << 15) | (1 << 12) | 0x73); }
  void wfi() { emit(0x10500073); }
  void jal(Reg rd, int32_t offset) {
    const uint32_t o = static_cast<uint32_t>(offset);
    emit((((o >> 20) & 1) << 31) | (((o >> 1) & 0x3ff) << 21) | (((o >> 11) & 1) << 20) |
         (((o >> 12) & 0xff) << 12) | (rd << 7) | 0x6f);
  }
  void j(int32_t offset) { jal(zero, offset); }
  // Loads a small (|v| < 2^31, sign-safe) constant into rd.
  void li(Reg rd, int32_t v) {
    const int32_t lo = (v << 20) >> 20;
    const uint32_t hi = static_cast<uint32_t>(v - lo) >> 12;
    if (hi != 0) {
      lui(rd, hi & 0xfffff);
      addi(rd, rd, lo);
    } else {
      addi(rd, zero, lo);
    }
  }

  size_t size() const { return code_.size() * 4; }
  std::vector<uint8_t> bytes() const {
    std::vector<uint8_t> out(size());
    std::memcpy(out.data(), code_.data(), out.size());
    return out;
  }

 private:
  void emit(uint32_t insn) { code_.push_back(insn); }
  void i_type(int32_t imm, Reg rs1, uint32_t f3, Reg rd, uint32_t op) {
    emit((static_cast<uint32_t>(imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op);
  }
  void s_type(int32_t imm, Reg rs2, Reg rs1, uint32_t f3) {
    const uint32_t i = static_cast<uint32_t>(imm) & 0xfff;
    emit(((i >> 5) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((i & 0x1f) << 7) | 0x23);
  }
  std::vector<uint32_t> code_;
};

}  // namespace tandem::vmm::testing
