// Memory management: Sv39 translation with hardware A/D updates (as QEMU 7.2 does), the
// host-pointer TLBs, the slow load/store paths and the decoded-code cache.
//
// Misaligned loads and stores are performed, not trapped (what qemu-system-riscv64 7.2
// does for ordinary accesses); one that crosses a page translates both pages before
// touching memory, so a fault leaves memory unchanged. LR/SC and AMOs always trap when
// misaligned (rv64a.cpp).
//
// Physical addresses outside RAM and the mapped devices raise access faults; a page-table
// entry must live in RAM (a walk that leaves RAM raises an access fault).
#include <cstring>

#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

namespace {
constexpr uint64_t kPteV = 1, kPteR = 2, kPteW = 4, kPteX = 8, kPteU = 16, kPteA = 64,
                   kPteD = 128;
constexpr uint64_t kPageMask = ~(kPageSize - 1);
constexpr uint64_t kPpnMask = (uint64_t{1} << 44) - 1;

Cause page_fault_for(Access access) {
  switch (access) {
    case Access::Fetch: return Cause::InsnPageFault;
    case Access::Load: return Cause::LoadPageFault;
    default: return Cause::StorePageFault;
  }
}
Cause access_fault_for(Access access) {
  switch (access) {
    case Access::Fetch: return Cause::InsnAccessFault;
    case Access::Load: return Cause::LoadAccessFault;
    default: return Cause::StoreAccessFault;
  }
}
unsigned tlb_index(uint64_t vaddr) { return (vaddr >> kPageShift) & (kTlbSize - 1); }
}  // namespace

void Hart::Impl::flush_tlbs() {
  // Machine mode never translates, so its entries survive satp/SUM/MXR changes.
  for (unsigned level : {0u, 1u}) {
    load_tlb[level].fill(TlbEntry{});
    store_tlb[level].fill(TlbEntry{});
    fetch_tlb[level].fill(FetchTlbEntry{});
  }
}

void Hart::Impl::flush_store_tlbs() {
  for (auto& set : store_tlb) set.fill(TlbEntry{});
}

bool Hart::Impl::translate(uint64_t vaddr, Access access, unsigned priv, uint64_t& paddr) {
  if (priv == 3 || (s.satp >> 60) == 0) {
    paddr = vaddr;
    return true;
  }
  auto fail = [&](Cause cause) {
    trap_cause = cause;
    trap_tval = vaddr;
    return false;
  };
  // Sv39: bits 63..39 must all equal bit 38.
  if (static_cast<uint64_t>(static_cast<int64_t>(vaddr << 25) >> 25) != vaddr) {
    return fail(page_fault_for(access));
  }
  uint64_t table = (s.satp & kPpnMask) << kPageShift;
  for (int level = 2; level >= 0; --level) {
    const uint64_t pte_addr = table + ((vaddr >> (kPageShift + 9 * level)) & 511) * 8;
    if (!ram.contains(pte_addr, 8)) return fail(access_fault_for(access));
    uint64_t pte;
    std::memcpy(&pte, ram.host(pte_addr), 8);
    if (!(pte & kPteV) || (!(pte & kPteR) && (pte & kPteW))) return fail(page_fault_for(access));
    if (pte >> 54) return fail(page_fault_for(access));  // reserved, PBMT and N bits
    if (!(pte & (kPteR | kPteX))) {                        // pointer to the next level
      if (level == 0) return fail(page_fault_for(access));
      table = ((pte >> 10) & kPpnMask) << kPageShift;
      continue;
    }
    // Leaf: permissions.
    if (priv == 0 && !(pte & kPteU)) return fail(page_fault_for(access));
    if (priv == 1 && (pte & kPteU)) {
      if (access == Access::Fetch || !(s.mstatus & mstatus::kSUM)) {
        return fail(page_fault_for(access));
      }
    }
    bool allowed = false;
    switch (access) {
      case Access::Fetch: allowed = pte & kPteX; break;
      case Access::Load:
        allowed = (pte & kPteR) || ((s.mstatus & mstatus::kMXR) && (pte & kPteX));
        break;
      case Access::Store: allowed = pte & kPteW; break;
    }
    if (!allowed) return fail(page_fault_for(access));
    const uint64_t ppn = (pte >> 10) & kPpnMask;
    const uint64_t low_ppn_mask = (uint64_t{1} << (9 * level)) - 1;
    if (ppn & low_ppn_mask) return fail(page_fault_for(access));  // misaligned superpage
    // Hardware A/D update.
    const uint64_t needed = kPteA | (access == Access::Store ? kPteD : 0);
    if ((pte & needed) != needed) {
      pte |= needed;
      ram.note_write_page((pte_addr - ram.base()) >> kPageShift);
      std::memcpy(ram.host(pte_addr), &pte, 8);
    }
    const uint64_t vpn_low = (vaddr >> kPageShift) & low_ppn_mask;
    paddr = ((ppn | vpn_low) << kPageShift) | (vaddr & (kPageSize - 1));
    return true;
  }
  return fail(page_fault_for(access));  // not reached
}

bool Hart::Impl::load_slow(uint64_t vaddr, unsigned size, uint64_t& value) {
  const unsigned priv = data_priv();
  const uint64_t offset = vaddr & (kPageSize - 1);
  value = 0;
  uint64_t paddr;
  if (offset + size <= kPageSize) {
    if (!translate(vaddr, Access::Load, priv, paddr)) return false;
    if (ram.contains(paddr, size)) {
      std::memcpy(&value, ram.host(paddr), size);
      if ((vaddr & (size - 1)) == 0 && ram.contains(paddr & kPageMask, kPageSize)) {
        TlbEntry& e = load_tlb[priv][tlb_index(vaddr)];
        e.tag = vaddr & kPageMask;
        e.addend = reinterpret_cast<uintptr_t>(ram.host(paddr & kPageMask)) - (vaddr & kPageMask);
      }
      return true;
    }
    mmio_accessed = true;
    fp_leave();  // device code runs with the host's MXCSR
    if (!bus.read(paddr, size, value)) {
      trap_cause = Cause::LoadAccessFault;
      trap_tval = vaddr;
      return false;
    }
    return true;
  }
  // Crosses a page: translate both halves first, then read byte by byte.
  const unsigned first_len = static_cast<unsigned>(kPageSize - offset);
  uint64_t paddr2;
  if (!translate(vaddr, Access::Load, priv, paddr)) return false;
  if (!translate(vaddr + first_len, Access::Load, priv, paddr2)) return false;
  for (unsigned i = 0; i < size; ++i) {
    const uint64_t pa = i < first_len ? paddr + i : paddr2 + (i - first_len);
    uint64_t byte;
    if (!ram.contains(pa, 1)) {
      mmio_accessed = true;
      fp_leave();
    }
    if (!bus.read(pa, 1, byte)) {
      trap_cause = Cause::LoadAccessFault;
      trap_tval = vaddr;
      return false;
    }
    value |= (byte & 0xff) << (8 * i);
  }
  return true;
}

bool Hart::Impl::store_slow(uint64_t vaddr, unsigned size, uint64_t value) {
  const unsigned priv = data_priv();
  const uint64_t offset = vaddr & (kPageSize - 1);
  uint64_t paddr;
  if (offset + size <= kPageSize) {
    if (!translate(vaddr, Access::Store, priv, paddr)) return false;
    if (ram.contains(paddr, size)) {
      if (!bus.write(paddr, size, value)) return false;  // cannot fail for RAM
      const uint64_t page_index = (paddr - ram.base()) >> kPageShift;
      // Only pages that hold no decoded code get a fast-path entry: a store there needs
      // no invalidation, and note_write_page() above already marked it dirty.
      if ((vaddr & (size - 1)) == 0 && ram.contains(paddr & kPageMask, kPageSize) &&
          !ram.is_code_page(page_index)) {
        TlbEntry& e = store_tlb[priv][tlb_index(vaddr)];
        e.tag = vaddr & kPageMask;
        e.addend = reinterpret_cast<uintptr_t>(ram.host(paddr & kPageMask)) - (vaddr & kPageMask);
      }
      return true;
    }
    mmio_accessed = true;
    fp_leave();  // device code runs with the host's MXCSR
    if (!bus.write(paddr, size, value)) {
      trap_cause = Cause::StoreAccessFault;
      trap_tval = vaddr;
      return false;
    }
    return true;
  }
  const unsigned first_len = static_cast<unsigned>(kPageSize - offset);
  uint64_t paddr2;
  if (!translate(vaddr, Access::Store, priv, paddr)) return false;
  if (!translate(vaddr + first_len, Access::Store, priv, paddr2)) return false;
  // Check every byte is backed before writing any, so a fault leaves memory unchanged.
  for (unsigned i = 0; i < size; ++i) {
    const uint64_t pa = i < first_len ? paddr + i : paddr2 + (i - first_len);
    uint64_t offset_in_device;
    if (!ram.contains(pa, 1) && !bus.find(pa, 1, offset_in_device)) {
      trap_cause = Cause::StoreAccessFault;
      trap_tval = vaddr;
      return false;
    }
  }
  for (unsigned i = 0; i < size; ++i) {
    const uint64_t pa = i < first_len ? paddr + i : paddr2 + (i - first_len);
    if (!ram.contains(pa, 1)) {
      mmio_accessed = true;
      fp_leave();
    }
    if (!bus.write(pa, 1, (value >> (8 * i)) & 0xff)) {
      trap_cause = Cause::StoreAccessFault;
      trap_tval = vaddr;
      return false;
    }
  }
  return true;
}

cpu::DecodedPage& Hart::Impl::decoded_page(uint64_t page_index) {
  auto& slot = decoded_pages[page_index];
  if (!slot) slot = std::make_unique<cpu::DecodedPage>();
  return *slot;
}

cpu::DecodedPage* Hart::Impl::fetch_page(uint64_t pc, uint64_t& page_index) {
  FetchTlbEntry& e = fetch_tlb[s.priv][tlb_index(pc)];
  if (e.tag == (pc & kPageMask)) {
    page_index = e.page_index;
    return e.page;
  }
  uint64_t paddr;
  if (!translate(pc, Access::Fetch, s.priv, paddr)) return nullptr;
  // Code runs from RAM only (the board has no ROM the hart must execute).
  if (!ram.contains(paddr & kPageMask, kPageSize)) {
    trap_cause = Cause::InsnAccessFault;
    trap_tval = pc;
    return nullptr;
  }
  page_index = (paddr - ram.base()) >> kPageShift;
  e.tag = pc & kPageMask;
  e.page = &decoded_page(page_index);
  e.page_index = page_index;
  return e.page;
}

bool Hart::Impl::fetch_bits_slow(uint64_t pc, uint32_t& bits) {
  uint64_t low_paddr;
  if (!translate(pc, Access::Fetch, s.priv, low_paddr)) return false;
  if (!ram.contains(low_paddr, 2)) {
    trap_cause = Cause::InsnAccessFault;
    trap_tval = pc;
    return false;
  }
  uint16_t low;
  std::memcpy(&low, ram.host(low_paddr), 2);
  if ((low & 3) != 3) {
    bits = low;
    return true;
  }
  uint64_t high_paddr;
  if (!translate(pc + 2, Access::Fetch, s.priv, high_paddr)) return false;
  if (!ram.contains(high_paddr, 2)) {
    trap_cause = Cause::InsnAccessFault;
    trap_tval = pc + 2;
    return false;
  }
  uint16_t high;
  std::memcpy(&high, ram.host(high_paddr), 2);
  bits = uint32_t{low} | uint32_t{high} << 16;
  return true;
}

uint16_t Hart::Impl::decode_block(cpu::DecodedPage& page, uint64_t page_index, unsigned slot) {
  using cpu::DecodedPage;
  using cpu::Op;
  if (page.index[slot] != DecodedPage::kNone) return page.index[slot];
  if (!ram.is_code_page(page_index)) {
    ram.mark_code_page(page_index);
    flush_store_tlbs();  // stores to this page must now take the invalidating slow path
  }
  if (page.entries.size() + DecodedPage::kSlots + 1 > DecodedPage::kCapacity) page.invalidate();
  const uint8_t* host = ram.host(ram.base() + (page_index << kPageShift));
  const size_t first = page.entries.size();
  unsigned tail = 0;  // block_left of an already decoded entry the block runs into
  unsigned i = slot;
  for (;;) {
    cpu::DecodedInsn trailer;
    if (i >= DecodedPage::kSlots) {
      trailer.op = Op::Exit;
      page.entries.push_back(trailer);
      break;
    }
    if (page.index[i] != DecodedPage::kNone) {
      trailer.op = Op::Continue;
      trailer.imm = static_cast<int32_t>(page.index[i]) - static_cast<int32_t>(page.entries.size());
      tail = page.entries[page.index[i]].block_left;
      page.entries.push_back(trailer);
      break;
    }
    uint16_t low;
    std::memcpy(&low, host + 2 * i, 2);
    uint32_t bits = low;
    if ((low & 3) == 3) {
      if (i == DecodedPage::kSlots - 1) {  // crosses the page end: the run loop steps it
        if (page.entries.size() == first) return DecodedPage::kNone;
        trailer.op = Op::Exit;
        page.entries.push_back(trailer);
        break;
      }
      uint16_t high;
      std::memcpy(&high, host + 2 * i + 2, 2);
      bits |= uint32_t{high} << 16;
    }
    page.index[i] = static_cast<uint16_t>(page.entries.size());
    page.entries.push_back(cpu::decode(bits));
    const cpu::DecodedInsn& d = page.entries.back();
    if (cpu::is_block_terminator(d.op)) break;
    i += d.len / 2;
  }
  // block_left, counted back from the block's end (trailers count nothing).
  unsigned count = tail;
  for (size_t k = page.entries.size(); k-- > first;) {
    cpu::DecodedInsn& d = page.entries[k];
    if (d.op == Op::Exit || d.op == Op::Continue) continue;
    d.block_left = static_cast<uint16_t>(++count);
  }
  return page.index[slot];
}

void Hart::Impl::on_code_write(uint64_t page_index) {
  // Deferred: the instruction doing the store may be executing from this very page. The
  // store's slow path sees code_written and ends the block; the run loop then drops the
  // stale decodings before fetching again.
  if (page_index < decoded_pages.size() && decoded_pages[page_index]) {
    pending_invalidations.push_back(page_index);
  }
  code_written = true;
}

void Hart::Impl::apply_code_invalidations() {
  for (uint64_t page_index : pending_invalidations) decoded_pages[page_index]->invalidate();
  pending_invalidations.clear();
  code_written = false;
}

void Hart::Impl::drop_decoded_code() {
  decoded_pages.clear();
  decoded_pages.resize(ram.page_count());
  pending_invalidations.clear();
  code_written = false;
  for (auto& set : fetch_tlb) set.fill(FetchTlbEntry{});
  if (jit) jit->reset();  // no page refers to a translation any more
}

cpu::JitCode Hart::Impl::jit_code(cpu::DecodedPage& page, const cpu::DecodedInsn* e) {
  const size_t index = static_cast<size_t>(e - page.entries.data());
  if (page.jit.size() <= index) page.jit.resize(page.entries.size());
  cpu::JitSlot* slot = &page.jit[index];
  if (slot->code) return slot->code;
  if (slot->heat == cpu::JitSlot::kNever || ++slot->heat < jit_heat) return nullptr;
  if (!jit->has_room()) {
    // The arena is full: drop every translation (none is running: we are between blocks).
    for (auto& p : decoded_pages) {
      if (p) p->jit.clear();
    }
    jit->reset();
    page.jit.resize(page.entries.size());
    slot = &page.jit[index];
  }
  slot->code = jit->translate(e);
  if (!slot->code) slot->heat = cpu::JitSlot::kNever;
  return slot->code;
}

}  // namespace tandem::vmm
