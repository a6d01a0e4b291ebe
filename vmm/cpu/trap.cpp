// Privileged architecture: reset, exception and interrupt entry with delegation, xRET.
#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

namespace {
constexpr uint64_t kInterruptBit = uint64_t{1} << 63;
// Misa: RV64 (MXL=2) with I, M, A, F, D, C, S, U.
constexpr uint64_t kMisa = (uint64_t{2} << 62) | (1u << ('I' - 'A')) | (1u << ('M' - 'A')) |
                           (1u << ('A' - 'A')) | (1u << ('F' - 'A')) | (1u << ('D' - 'A')) |
                           (1u << ('C' - 'A')) | (1u << ('S' - 'A')) | (1u << ('U' - 'A'));
}  // namespace

void Hart::Impl::reset(uint64_t pc) {
  const uint64_t icount = s.icount;
  s = ArchState{};
  s.icount = icount;
  s.pc = pc;
  s.priv = static_cast<uint8_t>(Privilege::Machine);
  s.misa = kMisa;
  s.mstatus = mstatus::kFixed;  // FS = Off, as on QEMU: firmware or the OS turns the FPU on
  // icount is kept, so the counters keep reading from where they were.
  s.cycle_offset = 0;
  s.instret_offset = 0;
  flush_tlbs();
  drop_decoded_code();
  irq_check_needed = true;
}

void Hart::Impl::take_exception(Cause cause, uint64_t tval, uint64_t pc) {
  const uint64_t code = static_cast<uint64_t>(cause);
  s.reservation_valid = 0;  // a trap breaks an LR/SC sequence
  const bool to_supervisor = s.priv <= 1 && ((s.medeleg >> code) & 1);
  if (to_supervisor) {
    s.scause = code;
    s.sepc = pc;
    s.stval = tval;
    uint64_t st = s.mstatus;
    st = (st & ~mstatus::kSPIE) | ((st & mstatus::kSIE) ? mstatus::kSPIE : 0);
    st &= ~mstatus::kSIE;
    st = (st & ~mstatus::kSPP) | (s.priv == 1 ? mstatus::kSPP : 0);
    s.mstatus = st;
    s.priv = 1;
    s.pc = s.stvec & ~uint64_t{3};
  } else {
    s.mcause = code;
    s.mepc = pc;
    s.mtval = tval;
    uint64_t st = s.mstatus;
    st = (st & ~mstatus::kMPIE) | ((st & mstatus::kMIE) ? mstatus::kMPIE : 0);
    st &= ~mstatus::kMIE;
    st = (st & ~mstatus::kMPP) | (uint64_t{s.priv} << mstatus::kMPPShift);
    s.mstatus = st;
    s.priv = 3;
    s.pc = s.mtvec & ~uint64_t{3};
  }
  irq_check_needed = true;
}

bool Hart::Impl::take_pending_interrupt() {
  irq_check_needed = false;
  const uint64_t pending = s.mip & s.mie;
  if (pending == 0) return false;
  const bool m_enabled = s.priv < 3 || (s.mstatus & mstatus::kMIE);
  const bool s_enabled = s.priv < 1 || (s.priv == 1 && (s.mstatus & mstatus::kSIE));
  uint64_t takeable = m_enabled ? (pending & ~s.mideleg) : 0;
  bool to_supervisor = false;
  if (takeable == 0 && s_enabled && s.priv <= 1) {
    takeable = pending & s.mideleg;
    to_supervisor = true;
  }
  if (takeable == 0) return false;
  // Priority: MEI, MSI, MTI, SEI, SSI, STI.
  static constexpr unsigned kPriority[] = {11, 3, 7, 9, 1, 5};
  unsigned code = 0;
  for (unsigned bit : kPriority) {
    if ((takeable >> bit) & 1) {
      code = bit;
      break;
    }
  }
  if (code == 0) return false;  // only non-standard bits pending: ignore them
  s.reservation_valid = 0;
  const uint64_t pc = s.pc;
  if (to_supervisor) {
    s.scause = kInterruptBit | code;
    s.sepc = pc;
    s.stval = 0;
    uint64_t st = s.mstatus;
    st = (st & ~mstatus::kSPIE) | ((st & mstatus::kSIE) ? mstatus::kSPIE : 0);
    st &= ~mstatus::kSIE;
    st = (st & ~mstatus::kSPP) | (s.priv == 1 ? mstatus::kSPP : 0);
    s.mstatus = st;
    s.priv = 1;
    const uint64_t base = s.stvec & ~uint64_t{3};
    s.pc = (s.stvec & 3) == 1 ? base + 4 * code : base;
  } else {
    s.mcause = kInterruptBit | code;
    s.mepc = pc;
    s.mtval = 0;
    uint64_t st = s.mstatus;
    st = (st & ~mstatus::kMPIE) | ((st & mstatus::kMIE) ? mstatus::kMPIE : 0);
    st &= ~mstatus::kMIE;
    st = (st & ~mstatus::kMPP) | (uint64_t{s.priv} << mstatus::kMPPShift);
    s.mstatus = st;
    s.priv = 3;
    const uint64_t base = s.mtvec & ~uint64_t{3};
    s.pc = (s.mtvec & 3) == 1 ? base + 4 * code : base;
  }
  irq_check_needed = true;
  return true;
}

void Hart::Impl::do_mret() {
  uint64_t st = s.mstatus;
  const uint8_t new_priv = static_cast<uint8_t>((st >> mstatus::kMPPShift) & 3);
  st = (st & ~mstatus::kMIE) | ((st & mstatus::kMPIE) ? mstatus::kMIE : 0);
  st |= mstatus::kMPIE;
  st &= ~mstatus::kMPP;  // MPP = U (least privileged mode)
  if (new_priv != 3) st &= ~mstatus::kMPRV;
  s.mstatus = st;
  s.priv = new_priv;
  s.pc = s.mepc;
  irq_check_needed = true;
}

void Hart::Impl::do_sret() {
  uint64_t st = s.mstatus;
  const uint8_t new_priv = (st & mstatus::kSPP) ? 1 : 0;
  st = (st & ~mstatus::kSIE) | ((st & mstatus::kSPIE) ? mstatus::kSIE : 0);
  st |= mstatus::kSPIE;
  st &= ~mstatus::kSPP;
  st &= ~mstatus::kMPRV;  // the new privilege is never M
  s.mstatus = st;
  s.priv = new_priv;
  s.pc = s.sepc;
  irq_check_needed = true;
}

void Hart::Impl::set_interrupt_pending(uint64_t mask, bool level) {
  if (level) s.mip |= mask;
  else s.mip &= ~mask;
  irq_check_needed = true;
}

}  // namespace tandem::vmm
