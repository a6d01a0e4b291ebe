// F and D: every Op::FpOp (the loads and stores are in the run loop, execute.cpp). The
// arithmetic is fpu.cpp; this file is the register file side: NaN-boxing, rounding-mode
// selection, fflags accrual and mstatus.FS.
//
// - FS = Off makes every F/D instruction (and fflags/frm/fcsr) illegal; every F/D instruction
//   that runs sets FS = Dirty (the spec allows setting Dirty conservatively; Linux only needs
//   Dirty whenever state may have changed).
// - A binary32 operand whose upper 32 bits are not all ones is the canonical NaN; binary32
//   results are written NaN-boxed. fmv.x.w, fsw and the sign-injection of a boxed value
//   follow the spec (fmv.x.w and fsw take the low 32 bits as they are).
#include "vmm/cpu/fpu.h"
#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

namespace {
constexpr uint64_t kBoxHigh = 0xffffffff00000000;
inline uint64_t unbox(uint64_t v) {
  return (v & kBoxHigh) == kBoxHigh ? (v & 0xffffffffu) : fpu::kCanonicalNaN32;
}
inline uint64_t box(uint64_t v) { return v | kBoxHigh; }
inline uint64_t sext32(uint64_t v) {
  return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v)));
}
}  // namespace

void Hart::Impl::fp_enter(unsigned rm) {
  if (fp_live_rm == kFpNotLive) {
    fp_host_mxcsr = fpu::live::read_mxcsr();
  } else {
    s.fcsr |= fpu::live::fflags_from_mxcsr(fpu::live::read_mxcsr());
  }
  fpu::live::write_mxcsr(fpu::live::mxcsr_for(rm));
  fp_live_rm = static_cast<uint8_t>(rm);
}

void Hart::Impl::fp_leave_slow() {
  s.fcsr |= fpu::live::fflags_from_mxcsr(fpu::live::read_mxcsr());
  fpu::live::write_mxcsr(fp_host_mxcsr);
  fp_live_rm = kFpNotLive;
}

bool Hart::Impl::fp_op(const cpu::DecodedInsn& d) {
  using cpu::FpKind;
  if (!(s.mstatus & mstatus::kFS)) return false;
  unsigned rm = (d.raw >> 12) & 7;
  if (d.imm & cpu::kFpUsesRm) {
    if (rm == 7) rm = static_cast<unsigned>(s.fcsr >> 5) & 7;
    if (rm > fpu::kRMM) return false;
  }
  const bool dbl = (d.imm & cpu::kFpDouble) != 0;
  const auto kind = static_cast<FpKind>(d.imm & 0xff);
  uint64_t* const f = s.fregs;
  const uint64_t a = dbl ? f[d.rs1] : unbox(f[d.rs1]);
  const uint64_t b = dbl ? f[d.rs2] : unbox(f[d.rs2]);
  const uint64_t sign = dbl ? uint64_t{1} << 63 : uint64_t{1} << 31;
  // The accrued flags: the fpu ORs each operation's into them (its host path runs fastest when
  // handed the flags already accrued, see fpu.cpp's MxcsrScope). The live path's flags accrue
  // in MXCSR instead (fp_leave folds them).
  uint32_t flags = static_cast<uint32_t>(s.fcsr) & 0x1f;
  uint64_t result = 0;
  bool to_x = false;  // the result goes to x[rd], not f[rd]
  switch (kind) {
    case FpKind::Add: case FpKind::Sub: case FpKind::Mul: case FpKind::Div: {
      const auto op = static_cast<fpu::Arith>(static_cast<unsigned>(kind) -
                                              static_cast<unsigned>(FpKind::Add));
      if (rm < fpu::kRMM && fpu::engine() == fpu::Engine::Auto) [[likely]] {
        fp_live(rm);
        result = dbl ? fpu::live::arith64(op, a, b) : fpu::live::arith32(op, a, b);
      } else {
        result = dbl ? fpu::arith64(op, a, b, rm, flags) : fpu::arith32(op, a, b, rm, flags);
      }
      break;
    }
    case FpKind::Sqrt:
      if (rm < fpu::kRMM && fpu::engine() == fpu::Engine::Auto) [[likely]] {
        fp_live(rm);
        result = dbl ? fpu::live::sqrt64(0, a) : fpu::live::sqrt32(0, a);
      } else {
        result = dbl ? fpu::sqrt64(a, rm, flags) : fpu::sqrt32(a, rm, flags);
      }
      break;
    case FpKind::Madd: case FpKind::Msub: case FpKind::Nmsub: case FpKind::Nmadd: {
      const unsigned rs3 = d.raw >> 27;
      const uint64_t c = dbl ? f[rs3] : unbox(f[rs3]);
      const bool negate_product = kind == FpKind::Nmsub || kind == FpKind::Nmadd;
      const bool negate_addend = kind == FpKind::Msub || kind == FpKind::Nmadd;
      if (rm < fpu::kRMM && fpu::engine() == fpu::Engine::Auto && fpu::host_has_fma()) [[likely]] {
        fp_live(rm);
        result = dbl ? fpu::live::fma64(negate_product ? a ^ sign : a, b,
                                        negate_addend ? c ^ sign : c, flags)
                     : fpu::live::fma32(negate_product ? a ^ sign : a, b,
                                        negate_addend ? c ^ sign : c, flags);
      } else {
        result = dbl ? fpu::fma64(a, b, c, negate_product, negate_addend, rm, flags)
                     : fpu::fma32(a, b, c, negate_product, negate_addend, rm, flags);
      }
      break;
    }
    case FpKind::Sgnj: result = (a & ~sign) | (b & sign); break;
    case FpKind::Sgnjn: result = (a & ~sign) | (~b & sign); break;
    case FpKind::Sgnjx: result = a ^ (b & sign); break;
    case FpKind::Min: case FpKind::Max:
      result = dbl ? fpu::minmax64(a, b, kind == FpKind::Max, flags)
                   : fpu::minmax32(a, b, kind == FpKind::Max, flags);
      break;
    case FpKind::Eq: case FpKind::Lt: case FpKind::Le: {
      const unsigned cmp = kind == FpKind::Eq ? 0 : kind == FpKind::Lt ? 1 : 2;
      result = dbl ? fpu::compare64(a, b, cmp, flags) : fpu::compare32(a, b, cmp, flags);
      to_x = true;
      break;
    }
    case FpKind::Class:
      result = dbl ? fpu::classify64(a) : fpu::classify32(a);
      to_x = true;
      break;
    case FpKind::MvToX:
      result = dbl ? f[d.rs1] : sext32(f[d.rs1]);
      to_x = true;
      break;
    case FpKind::MvFromX:
      result = dbl ? s.regs[d.rs1] : (s.regs[d.rs1] & 0xffffffffu);
      break;
    case FpKind::CvtW: case FpKind::CvtWu: case FpKind::CvtL: case FpKind::CvtLu: {
      const unsigned width = kind == FpKind::CvtW || kind == FpKind::CvtWu ? 32 : 64;
      const bool is_signed = kind == FpKind::CvtW || kind == FpKind::CvtL;
      result = dbl ? fpu::to_int64(a, width, is_signed, rm, flags)
                   : fpu::to_int32(a, width, is_signed, rm, flags);
      to_x = true;
      break;
    }
    case FpKind::CvtFromW: case FpKind::CvtFromWu: case FpKind::CvtFromL: case FpKind::CvtFromLu: {
      const unsigned width = kind == FpKind::CvtFromW || kind == FpKind::CvtFromWu ? 32 : 64;
      const bool is_signed = kind == FpKind::CvtFromW || kind == FpKind::CvtFromL;
      const uint64_t v = s.regs[d.rs1];
      result = dbl ? fpu::from_int64(v, width, is_signed, rm, flags)
                   : fpu::from_int32(v, width, is_signed, rm, flags);
      break;
    }
    case FpKind::CvtSD:  // binary64 -> binary32
      result = box(fpu::f64_to_f32(f[d.rs1], rm, flags));
      f[d.rd] = result;
      s.fcsr |= flags;
      s.mstatus |= mstatus::kFS;
      return true;
    case FpKind::CvtDS:  // binary32 -> binary64
      f[d.rd] = fpu::f32_to_f64(unbox(f[d.rs1]), flags);
      s.fcsr |= flags;
      s.mstatus |= mstatus::kFS;
      return true;
  }
  if (to_x) {
    if (d.rd != 0) s.regs[d.rd] = result;
  } else {
    f[d.rd] = dbl ? result : box(result);
  }
  s.fcsr |= flags;
  s.mstatus |= mstatus::kFS;  // Dirty
  return true;
}

}  // namespace tandem::vmm
