// The A extension: LR/SC and AMOs. Rare next to ordinary loads and stores, so they always
// take this out-of-line path.
//
// LR/SC follows QEMU: the reservation remembers the LR's virtual address and the value it
// loaded; an SC succeeds iff a reservation exists for the same address and memory still
// holds that value. An SC with no matching reservation fails (rd = 1) without accessing
// memory. Any SC and any trap clear the reservation. LR/SC/AMO addresses must be naturally
// aligned (LR: load-misaligned; SC/AMO: store/AMO-misaligned), and must be in RAM
// (an atomic on a device raises an access fault).
#include <cstring>

#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

namespace {
uint64_t read_ram(const GuestMemory& ram, uint64_t paddr, unsigned size) {
  if (size == 4) {
    uint32_t v;
    std::memcpy(&v, ram.host(paddr), 4);
    return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v)));
  }
  uint64_t v;
  std::memcpy(&v, ram.host(paddr), 8);
  return v;
}
}  // namespace

bool Hart::Impl::amo_translate(uint64_t vaddr, unsigned size, uint64_t& paddr) {
  if (vaddr & (size - 1)) {
    trap_cause = Cause::StoreMisaligned;
    trap_tval = vaddr;
    return false;
  }
  if (!translate(vaddr, Access::Store, data_priv(), paddr)) return false;
  if (!ram.contains(paddr, size)) {
    trap_cause = Cause::StoreAccessFault;
    trap_tval = vaddr;
    return false;
  }
  return true;
}

bool Hart::Impl::load_reserved(uint64_t vaddr, unsigned size, uint64_t& value) {
  if (vaddr & (size - 1)) {
    trap_cause = Cause::LoadMisaligned;
    trap_tval = vaddr;
    return false;
  }
  uint64_t paddr;
  if (!translate(vaddr, Access::Load, data_priv(), paddr)) return false;
  if (!ram.contains(paddr, size)) {
    trap_cause = Cause::LoadAccessFault;
    trap_tval = vaddr;
    return false;
  }
  value = read_ram(ram, paddr, size);
  s.reservation_valid = 1;
  s.reservation_addr = vaddr;
  s.reservation_value = value;
  return true;
}

bool Hart::Impl::store_conditional(uint64_t vaddr, unsigned size, uint64_t value,
                                   uint64_t& result) {
  const bool reserved = s.reservation_valid && s.reservation_addr == vaddr;
  s.reservation_valid = 0;
  if (!reserved) {
    result = 1;
    return true;
  }
  uint64_t paddr;
  if (!amo_translate(vaddr, size, paddr)) return false;
  if (read_ram(ram, paddr, size) != s.reservation_value) {
    result = 1;
    return true;
  }
  bus.write(paddr, size, value);  // RAM: marks the page dirty, invalidates decoded code
  result = 0;
  return true;
}

bool Hart::Impl::amo(cpu::AmoFunc func, uint64_t vaddr, unsigned size, uint64_t operand,
                     uint64_t& old) {
  uint64_t paddr;
  if (!amo_translate(vaddr, size, paddr)) return false;
  old = read_ram(ram, paddr, size);
  // For .W the operands are the low 32 bits, sign-extended (so signed compares work on
  // 64-bit values and unsigned compares on the zero-extended low words).
  const bool word = size == 4;
  const uint64_t a = old;
  const uint64_t b =
      word ? static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(operand))) : operand;
  auto unsigned_view = [&](uint64_t v) { return word ? (v & 0xffffffffu) : v; };
  uint64_t next = 0;
  switch (func) {
    case cpu::AmoFunc::Swap: next = b; break;
    case cpu::AmoFunc::Add: next = a + b; break;
    case cpu::AmoFunc::Xor: next = a ^ b; break;
    case cpu::AmoFunc::And: next = a & b; break;
    case cpu::AmoFunc::Or: next = a | b; break;
    case cpu::AmoFunc::Min:
      next = static_cast<int64_t>(a) < static_cast<int64_t>(b) ? a : b;
      break;
    case cpu::AmoFunc::Max:
      next = static_cast<int64_t>(a) > static_cast<int64_t>(b) ? a : b;
      break;
    case cpu::AmoFunc::Minu: next = unsigned_view(a) < unsigned_view(b) ? a : b; break;
    case cpu::AmoFunc::Maxu: next = unsigned_view(a) > unsigned_view(b) ? a : b; break;
  }
  bus.write(paddr, size, next);
  return true;
}

}  // namespace tandem::vmm
