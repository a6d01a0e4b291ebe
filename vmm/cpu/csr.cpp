// Zicsr: the CSR file and its access rules.
//
// Choices documented here:
// - No PMP: the hart implements zero PMP entries, which the privileged spec allows. pmpcfg0..14
//   (even) and pmpaddr0..63 exist and read as zero (all fields WARL, read-only zero); writes
//   are ignored. OpenSBI counts the entries by writing pmpaddrN and reading it back, so it finds
//   none and programs none; with zero entries every S/U access is allowed, which is what
//   happens. (A stub that read back what was written would claim a protection it never enforces.)
// - menvcfg/senvcfg (priv 1.12) exist: FIOM (bit 0) is read/write (fences are already total
//   here, so it changes nothing); CBIE/CBCFE/CBZE (Zicbom/Zicboz), PBMTE (Svpbmt) and STCE
//   (Sstc) are read-only zero because those extensions are not implemented. OpenSBI 1.1
//   detects priv 1.12 by reading menvcfg without a trap and then sets those bits; they stay 0.
// - mhpmcounter3..31, hpmcounter3..31, mhpmevent3..31 and mcountinhibit read 0 and ignore
//   writes. cycle == instret == icount (plus what the guest wrote to mcycle/minstret).
// - satp accepts only MODE Bare (0) and Sv39 (8); a write of any other mode is ignored.
// - mepc/sepc have bit 0 cleared (IALIGN = 16); mtvec/stvec writes with mode >= 2 are ignored.
#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

namespace {
constexpr uint64_t kInterruptMask = kMipSSIP | kMipMSIP | kMipSTIP | kMipMTIP | kMipSEIP | kMipMEIP;
constexpr uint64_t kSupervisorInterrupts = kMipSSIP | kMipSTIP | kMipSEIP;
// Exceptions M-mode may delegate: everything but ecall from M (and reserved causes).
constexpr uint64_t kDelegableExceptions = 0xb3ff;  // causes 0-9, 12, 13, 15
constexpr uint64_t kSatpModeSv39 = 8;
constexpr uint64_t kEnvcfgFiom = 1;
}  // namespace

void Hart::Impl::set_mstatus(uint64_t value) {
  uint64_t next = (s.mstatus & ~mstatus::kWritable) | (value & mstatus::kWritable);
  // MPP is WARL over {U, S, M}: the reserved encoding 2 keeps the old value.
  if (((next & mstatus::kMPP) >> mstatus::kMPPShift) == 2) {
    next = (next & ~mstatus::kMPP) | (s.mstatus & mstatus::kMPP);
  }
  next = (next & ~(mstatus::kUXL | mstatus::kSXL)) | mstatus::kFixed;
  const uint64_t changed = next ^ s.mstatus;
  s.mstatus = next;
  // Translation permissions depend on SUM/MXR; MPRV/MPP select the data privilege, which
  // picks a TLB set, so those need no flush.
  if (changed & (mstatus::kSUM | mstatus::kMXR)) flush_tlbs();
  irq_check_needed = true;
}

bool Hart::Impl::csr_read(uint16_t number, uint64_t& value, uint64_t icount_before) const {
  // Counters visible to S/U are gated by mcounteren (and scounteren for U).
  if (number >= csr::kCycle && number <= 0xc1f) {
    const unsigned bit = number - csr::kCycle;
    if (s.priv < 3 && !((s.mcounteren >> bit) & 1)) return false;
    if (s.priv < 1 && !((s.scounteren >> bit) & 1)) return false;
    if (number == csr::kCycle) value = icount_before + s.cycle_offset;
    else if (number == csr::kTime) value = clock.mtime(icount_before);
    else if (number == csr::kInstret) value = icount_before + s.instret_offset;
    else value = 0;
    return true;
  }
  if (number >= 0xb03 && number <= 0xb1f) { value = 0; return true; }  // mhpmcounterN
  if (number >= 0x323 && number <= 0x33f) { value = 0; return true; }  // mhpmeventN
  if (number >= csr::kPmpcfg0 && number < csr::kPmpcfg0 + 16) {
    if (number & 1) return false;  // RV64 has only the even pmpcfg registers
    value = 0;
    return true;
  }
  if (number >= csr::kPmpaddr0 && number < csr::kPmpaddr0 + 64) {
    value = 0;
    return true;
  }
  switch (number) {
    case csr::kFflags: case csr::kFrm: case csr::kFcsr:
      if (!(s.mstatus & mstatus::kFS)) return false;  // FS = Off: illegal
      value = number == csr::kFflags ? (s.fcsr & 0x1f)
              : number == csr::kFrm  ? (s.fcsr >> 5) & 7
                                     : s.fcsr & 0xff;
      return true;
    case csr::kSstatus: value = mstatus::with_sd(s.mstatus) & mstatus::kSstatusView; return true;
    case csr::kSie: value = s.mie & s.mideleg; return true;
    case csr::kStvec: value = s.stvec; return true;
    case csr::kScounteren: value = s.scounteren; return true;
    case csr::kSenvcfg: value = s.senvcfg; return true;
    case csr::kSscratch: value = s.sscratch; return true;
    case csr::kSepc: value = s.sepc; return true;
    case csr::kScause: value = s.scause; return true;
    case csr::kStval: value = s.stval; return true;
    case csr::kSip: value = s.mip & s.mideleg; return true;
    case csr::kSatp:
      if (s.priv == 1 && (s.mstatus & mstatus::kTVM)) return false;
      value = s.satp;
      return true;
    case csr::kMstatus: value = mstatus::with_sd(s.mstatus); return true;
    case csr::kMisa: value = s.misa; return true;
    case csr::kMedeleg: value = s.medeleg; return true;
    case csr::kMideleg: value = s.mideleg; return true;
    case csr::kMie: value = s.mie; return true;
    case csr::kMtvec: value = s.mtvec; return true;
    case csr::kMcounteren: value = s.mcounteren; return true;
    case csr::kMenvcfg: value = s.menvcfg; return true;
    case csr::kMcountinhibit: value = 0; return true;
    case csr::kMscratch: value = s.mscratch; return true;
    case csr::kMepc: value = s.mepc; return true;
    case csr::kMcause: value = s.mcause; return true;
    case csr::kMtval: value = s.mtval; return true;
    case csr::kMip: value = s.mip; return true;
    case csr::kMcycle: value = icount_before + s.cycle_offset; return true;
    case csr::kMinstret: value = icount_before + s.instret_offset; return true;
    case csr::kMvendorid: case csr::kMarchid: case csr::kMimpid: case csr::kMhartid:
    case csr::kMconfigptr:
      value = 0;
      return true;
    default:
      return false;
  }
}

bool Hart::Impl::csr_write(uint16_t number, uint64_t value, uint64_t icount_before) {
  if (number >= 0xb03 && number <= 0xb1f) return true;
  if (number >= 0x323 && number <= 0x33f) return true;
  if (number >= csr::kPmpcfg0 && number < csr::kPmpcfg0 + 16) return (number & 1) == 0;
  if (number >= csr::kPmpaddr0 && number < csr::kPmpaddr0 + 64) return true;
  // After this write retires, icount is icount_before + 1; the counter must then read `value`.
  const uint64_t icount_after = icount_before + 1;
  switch (number) {
    case csr::kFflags: case csr::kFrm: case csr::kFcsr:
      if (number == csr::kFflags) s.fcsr = (s.fcsr & ~uint64_t{0x1f}) | (value & 0x1f);
      else if (number == csr::kFrm) s.fcsr = (s.fcsr & 0x1f) | ((value & 7) << 5);
      else s.fcsr = value & 0xff;
      s.mstatus |= mstatus::kFS;  // Dirty
      return true;
    case csr::kSstatus:
      set_mstatus((s.mstatus & ~mstatus::kSstatusView) | (value & mstatus::kSstatusView));
      return true;
    case csr::kSie:
      s.mie = (s.mie & ~s.mideleg) | (value & s.mideleg);
      irq_check_needed = true;
      return true;
    case csr::kStvec:
      if ((value & 3) < 2) s.stvec = value;
      return true;
    case csr::kScounteren: s.scounteren = value & 0xffffffff; return true;
    case csr::kSenvcfg: s.senvcfg = value & kEnvcfgFiom; return true;
    case csr::kSscratch: s.sscratch = value; return true;
    case csr::kSepc: s.sepc = value & ~uint64_t{1}; return true;
    case csr::kScause: s.scause = value; return true;
    case csr::kStval: s.stval = value; return true;
    case csr::kSip: {
      const uint64_t writable = kMipSSIP & s.mideleg;
      s.mip = (s.mip & ~writable) | (value & writable);
      irq_check_needed = true;
      return true;
    }
    case csr::kSatp: {
      if (s.priv == 1 && (s.mstatus & mstatus::kTVM)) return false;
      const uint64_t mode = value >> 60;
      if (mode != 0 && mode != kSatpModeSv39) return true;  // unsupported mode: ignored
      s.satp = value;
      flush_tlbs();
      return true;
    }
    case csr::kMstatus: set_mstatus(value); return true;
    case csr::kMisa: return true;  // fixed
    case csr::kMedeleg: s.medeleg = value & kDelegableExceptions; return true;
    case csr::kMideleg:
      s.mideleg = value & kSupervisorInterrupts;
      irq_check_needed = true;
      return true;
    case csr::kMie:
      s.mie = value & kInterruptMask;
      irq_check_needed = true;
      return true;
    case csr::kMtvec:
      if ((value & 3) < 2) s.mtvec = value;
      return true;
    case csr::kMcounteren: s.mcounteren = value & 0xffffffff; return true;
    case csr::kMenvcfg: s.menvcfg = value & kEnvcfgFiom; return true;
    case csr::kMcountinhibit: return true;
    case csr::kMscratch: s.mscratch = value; return true;
    case csr::kMepc: s.mepc = value & ~uint64_t{1}; return true;
    case csr::kMcause: s.mcause = value; return true;
    case csr::kMtval: s.mtval = value; return true;
    case csr::kMip: {
      const uint64_t writable = kMipSSIP | kMipSTIP | kMipSEIP;
      s.mip = (s.mip & ~writable) | (value & writable);
      irq_check_needed = true;
      return true;
    }
    case csr::kMcycle: s.cycle_offset = value - icount_after; return true;
    case csr::kMinstret: s.instret_offset = value - icount_after; return true;
    default:
      return false;  // read-only machine information registers and unknown CSRs
  }
}

bool Hart::Impl::csr_op(cpu::Op op, uint16_t number, uint64_t operand, bool writes,
                        uint64_t& result, uint64_t icount_before) {
  const unsigned min_priv = (number >> 8) & 3;
  if (s.priv < min_priv) return false;
  const bool read_only = (number >> 10) == 3;
  if (writes && read_only) return false;
  uint64_t old = 0;
  // fcsr's flags may still be accruing in MXCSR (the live FP path): fold them first.
  if (number <= csr::kFcsr) fp_leave();
  // Even csrrw with rd = x0 must fault on a CSR that does not exist, so always look it up.
  if (!csr_read(number, old, icount_before)) return false;
  if (writes) {
    uint64_t next = operand;
    if (op == cpu::Op::Csrrs || op == cpu::Op::Csrrsi) next = old | operand;
    else if (op == cpu::Op::Csrrc || op == cpu::Op::Csrrci) next = old & ~operand;
    if (!csr_write(number, next, icount_before)) return false;
  }
  result = old;
  return true;
}

}  // namespace tandem::vmm
