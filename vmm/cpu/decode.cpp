// Instruction decoder: 32-bit RV64IMAFD + Zicsr/Zifencei/privileged encodings, and the
// compressed (C) encodings expanded to the same internal ops. Decoding happens once per
// instruction (the result is cached per code page), so clarity beats speed here.
#include "vmm/cpu/decoded.h"

namespace tandem::vmm::cpu {
namespace {

uint32_t bits_of(uint32_t value, unsigned hi, unsigned lo) {
  return (value >> lo) & ((1u << (hi - lo + 1)) - 1);
}
int32_t sign_extend(uint32_t value, unsigned width) {
  const uint32_t shift = 32 - width;
  return static_cast<int32_t>(value << shift) >> shift;
}

DecodedInsn make(Op op, uint32_t raw, unsigned rd, unsigned rs1, unsigned rs2, int32_t imm,
                 uint8_t len) {
  DecodedInsn d;
  d.op = op;
  d.rd = static_cast<uint8_t>(rd);
  d.rs1 = static_cast<uint8_t>(rs1);
  d.rs2 = static_cast<uint8_t>(rs2);
  d.imm = imm;
  d.raw = raw;
  d.len = len;
  return d;
}

DecodedInsn illegal(uint32_t raw, uint8_t len) { return make(Op::Illegal, raw, 0, 0, 0, 0, len); }

// Specialises common forms and routes x0 destinations: pure ALU ops writing x0 become
// Nop; ops with other effects (loads, jumps, atomics) write the sink register instead.
DecodedInsn finish(DecodedInsn d) {
  if (d.op == Op::Addi && d.rs1 == 0) d.op = Op::Li;
  else if (d.op == Op::Addi && d.imm == 0) d.op = Op::Mv;
  else if ((d.op == Op::Add || d.op == Op::Or || d.op == Op::Xor) && d.rs1 == 0) {
    d.op = Op::Mv;
    d.rs1 = d.rs2;
  }
  if (d.rd == 0) {
    if (is_pure_alu(d.op)) {
      d.op = Op::Nop;
    } else {
      switch (d.op) {
        case Op::Lb: case Op::Lh: case Op::Lw: case Op::Ld: case Op::Lbu: case Op::Lhu:
        case Op::Lwu: case Op::Jal: case Op::Jalr: case Op::LrW: case Op::LrD: case Op::ScW:
        case Op::ScD: case Op::AmoW: case Op::AmoD:
          d.rd = kSinkReg;
          break;
        default:
          break;
      }
    }
  }
  return d;
}

// F and D (opcodes LOAD-FP, STORE-FP, OP-FP and the four fused multiply-adds).
DecodedInsn decode_fp(uint32_t x) {
  const unsigned rd = bits_of(x, 11, 7);
  const unsigned rs1 = bits_of(x, 19, 15);
  const unsigned rs2 = bits_of(x, 24, 20);
  const unsigned f3 = bits_of(x, 14, 12);
  const unsigned opcode = x & 0x7f;
  auto fp = [&](FpKind kind, bool dbl, bool uses_rm) {
    // A static reserved rounding mode is illegal; 7 (dynamic) is checked against frm at run time.
    if (uses_rm && (f3 == 5 || f3 == 6)) return illegal(x, 4);
    const int32_t imm = static_cast<int32_t>(kind) | (dbl ? kFpDouble : 0) | (uses_rm ? kFpUsesRm : 0);
    return make(Op::FpOp, x, rd, rs1, rs2, imm, 4);
  };
  if (opcode == 0x07) {  // FLW / FLD
    if (f3 != 2 && f3 != 3) return illegal(x, 4);
    return make(f3 == 2 ? Op::Flw : Op::Fld, x, rd, rs1, 0, static_cast<int32_t>(x) >> 20, 4);
  }
  if (opcode == 0x27) {  // FSW / FSD
    if (f3 != 2 && f3 != 3) return illegal(x, 4);
    const int32_t imm_s = static_cast<int32_t>((x >> 25) << 5 | bits_of(x, 11, 7)) << 20 >> 20;
    return make(f3 == 2 ? Op::Fsw : Op::Fsd, x, 0, rs1, rs2, imm_s, 4);
  }
  if (opcode != 0x53) {  // FMADD / FMSUB / FNMSUB / FNMADD
    const unsigned fmt = bits_of(x, 26, 25);
    if (fmt > 1) return illegal(x, 4);
    static constexpr FpKind kFma[4] = {FpKind::Madd, FpKind::Msub, FpKind::Nmsub, FpKind::Nmadd};
    return fp(kFma[(opcode >> 2) & 3], fmt == 1, true);
  }
  const unsigned f7 = bits_of(x, 31, 25);
  const unsigned fmt = f7 & 3;
  const unsigned f5 = f7 >> 2;
  if (fmt > 1) return illegal(x, 4);
  const bool dbl = fmt == 1;
  switch (f5) {
    case 0x00: return fp(FpKind::Add, dbl, true);
    case 0x01: return fp(FpKind::Sub, dbl, true);
    case 0x02: return fp(FpKind::Mul, dbl, true);
    case 0x03: return fp(FpKind::Div, dbl, true);
    case 0x0b: return rs2 == 0 ? fp(FpKind::Sqrt, dbl, true) : illegal(x, 4);
    case 0x04: {
      static constexpr FpKind kSgnj[3] = {FpKind::Sgnj, FpKind::Sgnjn, FpKind::Sgnjx};
      return f3 < 3 ? fp(kSgnj[f3], dbl, false) : illegal(x, 4);
    }
    case 0x05:
      if (f3 > 1) return illegal(x, 4);
      return fp(f3 == 0 ? FpKind::Min : FpKind::Max, dbl, false);
    case 0x08:  // fcvt.s.d (fmt S, rs2 = 1) / fcvt.d.s (fmt D, rs2 = 0)
      if (!dbl && rs2 == 1) return fp(FpKind::CvtSD, false, true);
      if (dbl && rs2 == 0) return fp(FpKind::CvtDS, false, true);
      return illegal(x, 4);
    case 0x14: {
      static constexpr FpKind kCmp[3] = {FpKind::Le, FpKind::Lt, FpKind::Eq};
      return f3 < 3 ? fp(kCmp[f3], dbl, false) : illegal(x, 4);
    }
    case 0x18: {
      static constexpr FpKind kToInt[4] = {FpKind::CvtW, FpKind::CvtWu, FpKind::CvtL, FpKind::CvtLu};
      return rs2 < 4 ? fp(kToInt[rs2], dbl, true) : illegal(x, 4);
    }
    case 0x1a: {
      static constexpr FpKind kFromInt[4] = {FpKind::CvtFromW, FpKind::CvtFromWu,
                                             FpKind::CvtFromL, FpKind::CvtFromLu};
      return rs2 < 4 ? fp(kFromInt[rs2], dbl, true) : illegal(x, 4);
    }
    case 0x1c:
      if (rs2 != 0) return illegal(x, 4);
      if (f3 == 0) return fp(FpKind::MvToX, dbl, false);
      if (f3 == 1) return fp(FpKind::Class, dbl, false);
      return illegal(x, 4);
    case 0x1e:
      if (rs2 != 0 || f3 != 0) return illegal(x, 4);
      return fp(FpKind::MvFromX, dbl, false);
    default:
      return illegal(x, 4);
  }
}

DecodedInsn decode32(uint32_t x) {
  const unsigned rd = bits_of(x, 11, 7);
  const unsigned rs1 = bits_of(x, 19, 15);
  const unsigned rs2 = bits_of(x, 24, 20);
  const unsigned f3 = bits_of(x, 14, 12);
  const unsigned f7 = bits_of(x, 31, 25);
  const int32_t imm_i = static_cast<int32_t>(x) >> 20;
  const int32_t imm_s = static_cast<int32_t>((x >> 25) << 5 | bits_of(x, 11, 7)) << 20 >> 20;
  const int32_t imm_b = sign_extend(bits_of(x, 31, 31) << 12 | bits_of(x, 7, 7) << 11 |
                                        bits_of(x, 30, 25) << 5 | bits_of(x, 11, 8) << 1,
                                    13);
  const int32_t imm_u = static_cast<int32_t>(x & 0xfffff000u);
  const int32_t imm_j = sign_extend(bits_of(x, 31, 31) << 20 | bits_of(x, 19, 12) << 12 |
                                        bits_of(x, 20, 20) << 11 | bits_of(x, 30, 21) << 1,
                                    21);
  auto r = [&](Op op) { return make(op, x, rd, rs1, rs2, 0, 4); };
  auto i = [&](Op op, int32_t imm) { return make(op, x, rd, rs1, 0, imm, 4); };
  auto s = [&](Op op, int32_t imm) { return make(op, x, 0, rs1, rs2, imm, 4); };

  switch (x & 0x7f) {
    case 0x07: case 0x27: case 0x43: case 0x47: case 0x4b: case 0x4f: case 0x53:
      return decode_fp(x);
    case 0x37: return i(Op::Li, imm_u);
    case 0x17: return i(Op::Auipc, imm_u);
    case 0x6f: return i(Op::Jal, imm_j);
    case 0x67: return f3 == 0 ? i(Op::Jalr, imm_i) : illegal(x, 4);
    case 0x63: {
      static constexpr Op kBranch[8] = {Op::Beq, Op::Bne, Op::Illegal, Op::Illegal,
                                        Op::Blt, Op::Bge, Op::Bltu, Op::Bgeu};
      if (kBranch[f3] == Op::Illegal) return illegal(x, 4);
      return s(kBranch[f3], imm_b);
    }
    case 0x03: {
      static constexpr Op kLoad[8] = {Op::Lb, Op::Lh, Op::Lw, Op::Ld,
                                      Op::Lbu, Op::Lhu, Op::Lwu, Op::Illegal};
      if (kLoad[f3] == Op::Illegal) return illegal(x, 4);
      return i(kLoad[f3], imm_i);
    }
    case 0x23: {
      static constexpr Op kStore[4] = {Op::Sb, Op::Sh, Op::Sw, Op::Sd};
      if (f3 > 3) return illegal(x, 4);
      return s(kStore[f3], imm_s);
    }
    case 0x13: {
      const unsigned f6 = bits_of(x, 31, 26);
      const int32_t shamt = static_cast<int32_t>(bits_of(x, 25, 20));
      switch (f3) {
        case 0: return i(Op::Addi, imm_i);
        case 1: return f6 == 0 ? i(Op::Slli, shamt) : illegal(x, 4);
        case 2: return i(Op::Slti, imm_i);
        case 3: return i(Op::Sltiu, imm_i);
        case 4: return i(Op::Xori, imm_i);
        case 5:
          if (f6 == 0) return i(Op::Srli, shamt);
          if (f6 == 0x10) return i(Op::Srai, shamt);
          return illegal(x, 4);
        case 6: return i(Op::Ori, imm_i);
        default: return i(Op::Andi, imm_i);
      }
    }
    case 0x1b: {
      const int32_t shamt = static_cast<int32_t>(rs2);
      if (f3 == 0) return i(Op::Addiw, imm_i);
      if (f3 == 1 && f7 == 0) return i(Op::Slliw, shamt);
      if (f3 == 5 && f7 == 0) return i(Op::Srliw, shamt);
      if (f3 == 5 && f7 == 0x20) return i(Op::Sraiw, shamt);
      return illegal(x, 4);
    }
    case 0x33: {
      if (f7 == 0) {
        static constexpr Op kOp[8] = {Op::Add, Op::Sll, Op::Slt, Op::Sltu,
                                      Op::Xor, Op::Srl, Op::Or, Op::And};
        return r(kOp[f3]);
      }
      if (f7 == 1) {
        static constexpr Op kMul[8] = {Op::Mul, Op::Mulh, Op::Mulhsu, Op::Mulhu,
                                       Op::Div, Op::Divu, Op::Rem, Op::Remu};
        return r(kMul[f3]);
      }
      if (f7 == 0x20 && f3 == 0) return r(Op::Sub);
      if (f7 == 0x20 && f3 == 5) return r(Op::Sra);
      return illegal(x, 4);
    }
    case 0x3b: {
      if (f7 == 0 && f3 == 0) return r(Op::Addw);
      if (f7 == 0 && f3 == 1) return r(Op::Sllw);
      if (f7 == 0 && f3 == 5) return r(Op::Srlw);
      if (f7 == 0x20 && f3 == 0) return r(Op::Subw);
      if (f7 == 0x20 && f3 == 5) return r(Op::Sraw);
      if (f7 == 1) {
        static constexpr Op kMulW[8] = {Op::Mulw, Op::Illegal, Op::Illegal, Op::Illegal,
                                        Op::Divw, Op::Divuw, Op::Remw, Op::Remuw};
        if (kMulW[f3] == Op::Illegal) return illegal(x, 4);
        return r(kMulW[f3]);
      }
      return illegal(x, 4);
    }
    case 0x0f:
      if (f3 == 0) return make(Op::Fence, x, 0, 0, 0, 0, 4);
      if (f3 == 1) return make(Op::FenceI, x, 0, 0, 0, 0, 4);
      return illegal(x, 4);
    case 0x73: {
      if (f3 == 0) {
        if (x == 0x00000073) return make(Op::Ecall, x, 0, 0, 0, 0, 4);
        if (x == 0x00100073) return make(Op::Ebreak, x, 0, 0, 0, 0, 4);
        if (x == 0x10200073) return make(Op::Sret, x, 0, 0, 0, 0, 4);
        if (x == 0x30200073) return make(Op::Mret, x, 0, 0, 0, 0, 4);
        if (x == 0x10500073) return make(Op::Wfi, x, 0, 0, 0, 0, 4);
        if (f7 == 0x09 && rd == 0) return make(Op::SfenceVma, x, 0, rs1, rs2, 0, 4);
        return illegal(x, 4);
      }
      static constexpr Op kCsr[8] = {Op::Illegal, Op::Csrrw, Op::Csrrs, Op::Csrrc,
                                     Op::Illegal, Op::Csrrwi, Op::Csrrsi, Op::Csrrci};
      if (kCsr[f3] == Op::Illegal) return illegal(x, 4);
      // rd stays as encoded (x0 means "no read" for csrrw); imm carries the CSR number.
      return make(kCsr[f3], x, rd, rs1, 0, static_cast<int32_t>(bits_of(x, 31, 20)), 4);
    }
    case 0x2f: {
      if (f3 != 2 && f3 != 3) return illegal(x, 4);
      const bool dword = f3 == 3;
      const unsigned f5 = bits_of(x, 31, 27);
      if (f5 == 0x02) {
        if (rs2 != 0) return illegal(x, 4);
        return r(dword ? Op::LrD : Op::LrW);
      }
      if (f5 == 0x03) return r(dword ? Op::ScD : Op::ScW);
      switch (f5) {
        case 0x00: case 0x01: case 0x04: case 0x08: case 0x0c:
        case 0x10: case 0x14: case 0x18: case 0x1c: {
          DecodedInsn d = r(dword ? Op::AmoD : Op::AmoW);
          d.imm = static_cast<int32_t>(f5);
          return d;
        }
        default:
          return illegal(x, 4);
      }
    }
    default:
      return illegal(x, 4);
  }
}

DecodedInsn decode16(uint32_t x) {
  x &= 0xffff;
  auto c = [&](Op op, unsigned rd, unsigned rs1, unsigned rs2, int32_t imm) {
    return make(op, x, rd, rs1, rs2, imm, 2);
  };
  const unsigned f3 = bits_of(x, 15, 13);
  const unsigned rd_full = bits_of(x, 11, 7);
  const unsigned rs2_full = bits_of(x, 6, 2);
  const unsigned rd_short = 8 + bits_of(x, 4, 2);   // rd' / rs2' in bits 4:2
  const unsigned rs1_short = 8 + bits_of(x, 9, 7);  // rs1' / rd' in bits 9:7
  const int32_t imm6 = sign_extend(bits_of(x, 12, 12) << 5 | bits_of(x, 6, 2), 6);
  const uint32_t uimm_w = bits_of(x, 12, 10) << 3 | bits_of(x, 6, 6) << 2 | bits_of(x, 5, 5) << 6;
  const uint32_t uimm_d = bits_of(x, 12, 10) << 3 | bits_of(x, 6, 5) << 6;

  switch (x & 3) {
    case 0:
      switch (f3) {
        case 0: {  // C.ADDI4SPN
          const uint32_t imm = bits_of(x, 10, 7) << 6 | bits_of(x, 12, 11) << 4 |
                               bits_of(x, 5, 5) << 3 | bits_of(x, 6, 6) << 2;
          if (imm == 0) return illegal(x, 2);
          return c(Op::Addi, rd_short, 2, 0, static_cast<int32_t>(imm));
        }
        case 1: return c(Op::Fld, rd_short, rs1_short, 0, static_cast<int32_t>(uimm_d));  // C.FLD
        case 2: return c(Op::Lw, rd_short, rs1_short, 0, static_cast<int32_t>(uimm_w));
        case 3: return c(Op::Ld, rd_short, rs1_short, 0, static_cast<int32_t>(uimm_d));
        case 5: return c(Op::Fsd, 0, rs1_short, rd_short, static_cast<int32_t>(uimm_d));  // C.FSD
        case 6: return c(Op::Sw, 0, rs1_short, rd_short, static_cast<int32_t>(uimm_w));
        case 7: return c(Op::Sd, 0, rs1_short, rd_short, static_cast<int32_t>(uimm_d));
        default: return illegal(x, 2);  // reserved
      }
    case 1:
      switch (f3) {
        case 0: return c(Op::Addi, rd_full, rd_full, 0, imm6);  // C.ADDI / C.NOP
        case 1:                                                    // C.ADDIW (RV64)
          if (rd_full == 0) return illegal(x, 2);
          return c(Op::Addiw, rd_full, rd_full, 0, imm6);
        case 2: return c(Op::Li, rd_full, 0, 0, imm6);  // C.LI
        case 3:
          if (rd_full == 2) {  // C.ADDI16SP
            const int32_t imm = sign_extend(bits_of(x, 12, 12) << 9 | bits_of(x, 4, 3) << 7 |
                                                bits_of(x, 5, 5) << 6 | bits_of(x, 2, 2) << 5 |
                                                bits_of(x, 6, 6) << 4,
                                            10);
            if (imm == 0) return illegal(x, 2);
            return c(Op::Addi, 2, 2, 0, imm);
          } else {  // C.LUI
            const int32_t imm = imm6 * 4096;
            if (imm == 0) return illegal(x, 2);
            return c(Op::Li, rd_full, 0, 0, imm);
          }
        case 4: {
          const unsigned rd = rs1_short;
          const int32_t shamt = static_cast<int32_t>(bits_of(x, 12, 12) << 5 | bits_of(x, 6, 2));
          switch (bits_of(x, 11, 10)) {
            case 0: return shamt == 0 ? c(Op::Nop, 0, 0, 0, 0) : c(Op::Srli, rd, rd, 0, shamt);
            case 1: return shamt == 0 ? c(Op::Nop, 0, 0, 0, 0) : c(Op::Srai, rd, rd, 0, shamt);
            case 2: return c(Op::Andi, rd, rd, 0, imm6);
            default: {
              static constexpr Op kAlu[8] = {Op::Sub, Op::Xor, Op::Or, Op::And,
                                             Op::Subw, Op::Addw, Op::Illegal, Op::Illegal};
              const Op op = kAlu[bits_of(x, 12, 12) << 2 | bits_of(x, 6, 5)];
              if (op == Op::Illegal) return illegal(x, 2);
              return c(op, rd, rd, rd_short, 0);
            }
          }
        }
        case 5: {  // C.J
          const int32_t imm = sign_extend(bits_of(x, 12, 12) << 11 | bits_of(x, 11, 11) << 4 |
                                              bits_of(x, 10, 9) << 8 | bits_of(x, 8, 8) << 10 |
                                              bits_of(x, 7, 7) << 6 | bits_of(x, 6, 6) << 7 |
                                              bits_of(x, 5, 3) << 1 | bits_of(x, 2, 2) << 5,
                                          12);
          return c(Op::Jal, 0, 0, 0, imm);
        }
        default: {  // C.BEQZ / C.BNEZ
          const int32_t imm = sign_extend(bits_of(x, 12, 12) << 8 | bits_of(x, 11, 10) << 3 |
                                              bits_of(x, 6, 5) << 6 | bits_of(x, 4, 3) << 1 |
                                              bits_of(x, 2, 2) << 5,
                                          9);
          return c(f3 == 6 ? Op::Beq : Op::Bne, 0, rs1_short, 0, imm);
        }
      }
    case 2:
      switch (f3) {
        case 0: {  // C.SLLI (shamt 0 is a HINT)
          const int32_t shamt = static_cast<int32_t>(bits_of(x, 12, 12) << 5 | bits_of(x, 6, 2));
          if (shamt == 0) return c(Op::Nop, 0, 0, 0, 0);
          return c(Op::Slli, rd_full, rd_full, 0, shamt);
        }
        case 1: {  // C.FLDSP (f0 is a real register)
          const uint32_t imm = bits_of(x, 12, 12) << 5 | bits_of(x, 6, 5) << 3 | bits_of(x, 4, 2) << 6;
          return c(Op::Fld, rd_full, 2, 0, static_cast<int32_t>(imm));
        }
        case 2: {  // C.LWSP
          if (rd_full == 0) return illegal(x, 2);
          const uint32_t imm = bits_of(x, 12, 12) << 5 | bits_of(x, 6, 4) << 2 | bits_of(x, 3, 2) << 6;
          return c(Op::Lw, rd_full, 2, 0, static_cast<int32_t>(imm));
        }
        case 3: {  // C.LDSP
          if (rd_full == 0) return illegal(x, 2);
          const uint32_t imm = bits_of(x, 12, 12) << 5 | bits_of(x, 6, 5) << 3 | bits_of(x, 4, 2) << 6;
          return c(Op::Ld, rd_full, 2, 0, static_cast<int32_t>(imm));
        }
        case 4:
          if (bits_of(x, 12, 12) == 0) {
            if (rs2_full == 0) {  // C.JR
              if (rd_full == 0) return illegal(x, 2);
              return c(Op::Jalr, 0, rd_full, 0, 0);
            }
            return c(Op::Mv, rd_full, rs2_full, 0, 0);  // C.MV
          }
          if (rd_full == 0 && rs2_full == 0) return c(Op::Ebreak, 0, 0, 0, 0);
          if (rs2_full == 0) return c(Op::Jalr, 1, rd_full, 0, 0);  // C.JALR
          return c(Op::Add, rd_full, rd_full, rs2_full, 0);            // C.ADD
        case 6: {  // C.SWSP
          const uint32_t imm = bits_of(x, 12, 9) << 2 | bits_of(x, 8, 7) << 6;
          return c(Op::Sw, 0, 2, rs2_full, static_cast<int32_t>(imm));
        }
        case 7: {  // C.SDSP
          const uint32_t imm = bits_of(x, 12, 10) << 3 | bits_of(x, 9, 7) << 6;
          return c(Op::Sd, 0, 2, rs2_full, static_cast<int32_t>(imm));
        }
        case 5: {  // C.FSDSP
          const uint32_t imm = bits_of(x, 12, 10) << 3 | bits_of(x, 9, 7) << 6;
          return c(Op::Fsd, 0, 2, rs2_full, static_cast<int32_t>(imm));
        }
        default:
          return illegal(x, 2);
      }
    default:
      return illegal(x, 2);  // unreachable: quadrant 3 is a 32-bit instruction
  }
}

}  // namespace

DecodedInsn decode(uint32_t bits) {
  DecodedInsn d = (bits & 3) != 3 ? finish(decode16(bits)) : finish(decode32(bits));
  if (has_successor_cache(d.op)) d.raw = 0;  // empty successor cache
  return d;
}

}  // namespace tandem::vmm::cpu
