#pragma once
// Private parts of the hart: architectural state, the software TLBs and the decoded-code
// cache. Split by concern into csr.cpp (CSRs), trap.cpp (exceptions, interrupts, xRET),
// mmu.cpp (Sv39, TLBs, slow memory paths), rv64a.cpp (LR/SC, AMOs), execute.cpp (the
// run loop) and hart.cpp (public API, save/restore).
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "vmm/bus.h"
#include "vmm/clock.h"
#include "vmm/cpu/decoded.h"
#include "vmm/cpu/hart.h"
#include "vmm/cpu/jit.h"

namespace tandem::vmm {

namespace csr {
inline constexpr uint16_t kFflags = 0x001, kFrm = 0x002, kFcsr = 0x003;
inline constexpr uint16_t kSstatus = 0x100, kSie = 0x104, kStvec = 0x105, kScounteren = 0x106,
                          kSenvcfg = 0x10a, kSscratch = 0x140, kSepc = 0x141, kScause = 0x142,
                          kStval = 0x143, kSip = 0x144, kSatp = 0x180;
inline constexpr uint16_t kMstatus = 0x300, kMisa = 0x301, kMedeleg = 0x302, kMideleg = 0x303,
                          kMie = 0x304, kMtvec = 0x305, kMcounteren = 0x306, kMenvcfg = 0x30a,
                          kMcountinhibit = 0x320, kMscratch = 0x340, kMepc = 0x341,
                          kMcause = 0x342, kMtval = 0x343, kMip = 0x344, kPmpcfg0 = 0x3a0,
                          kPmpaddr0 = 0x3b0, kMcycle = 0xb00, kMinstret = 0xb02,
                          kCycle = 0xc00, kTime = 0xc01, kInstret = 0xc02, kMvendorid = 0xf11,
                          kMarchid = 0xf12, kMimpid = 0xf13, kMhartid = 0xf14,
                          kMconfigptr = 0xf15;
}  // namespace csr

namespace mstatus {
inline constexpr uint64_t kSIE = 1u << 1, kMIE = 1u << 3, kSPIE = 1u << 5, kMPIE = 1u << 7,
                          kSPP = 1u << 8, kMPP = 3u << 11, kFS = 3u << 13, kMPRV = 1u << 17,
                          kSUM = 1u << 18, kMXR = 1u << 19, kTVM = 1u << 20, kTW = 1u << 21,
                          kTSR = 1u << 22;
inline constexpr unsigned kMPPShift = 11;
inline constexpr uint64_t kUXL = uint64_t{3} << 32, kSXL = uint64_t{3} << 34;
// UXL = SXL = 2 (64-bit), read-only.
inline constexpr uint64_t kFixed = (uint64_t{2} << 32) | (uint64_t{2} << 34);
inline constexpr uint64_t kWritable = kSIE | kMIE | kSPIE | kMPIE | kSPP | kMPP | kFS | kMPRV |
                                      kSUM | kMXR | kTVM | kTW | kTSR;
// SD (bit 63) is not stored: reads derive it from FS == Dirty (XS and VS are always 0).
inline constexpr uint64_t kSD = uint64_t{1} << 63;
inline uint64_t with_sd(uint64_t v) { return (v & kFS) == kFS ? v | kSD : v; }
inline constexpr uint64_t kSstatusView = kSIE | kSPIE | kSPP | kFS | kSUM | kMXR | kUXL |
                                         (uint64_t{1} << 63);
}  // namespace mstatus

// Exception causes (mcause with the interrupt bit clear).
enum class Cause : uint64_t {
  InsnMisaligned = 0, InsnAccessFault = 1, IllegalInsn = 2, Breakpoint = 3,
  LoadMisaligned = 4, LoadAccessFault = 5, StoreMisaligned = 6, StoreAccessFault = 7,
  EcallFromU = 8, EcallFromS = 9, EcallFromM = 11,
  InsnPageFault = 12, LoadPageFault = 13, StorePageFault = 15,
};

enum class Access : uint8_t { Fetch, Load, Store };

// Every architectural bit of the hart, as one plain struct: save/restore write it whole.
struct ArchState {
  uint64_t regs[33];  // x0..x31 plus the write sink (slot 32, never read)
  uint64_t pc;
  uint64_t icount;
  uint8_t priv;
  uint8_t reservation_valid;
  uint8_t pad[6];
  uint64_t reservation_addr;   // physical address of the LR
  uint64_t reservation_value;  // value the LR loaded (SC also compares it, as QEMU does)
  uint64_t mstatus, misa, medeleg, mideleg, mie, mip, mtvec, mcounteren, mscratch, mepc,
      mcause, mtval;
  uint64_t stvec, scounteren, sscratch, sepc, scause, stval, satp;
  uint64_t cycle_offset, instret_offset;  // written mcycle/minstret minus icount
  uint64_t menvcfg, senvcfg;  // only FIOM (bit 0) is implemented; the rest reads zero
  // F and D: f0..f31 (binary32 values NaN-boxed) and fcsr (frm in bits 7:5, fflags in 4:0).
  uint64_t fregs[32];
  uint64_t fcsr;
};

// A software TLB entry: `tag` is the virtual page address (low bits clear), and host
// pointers are `addend + vaddr`. Lookups compare the tag with vaddr masked to its page
// bits plus its alignment bits (0..7), so invalid entries use a tag with bit 11 set: no
// masked address can ever equal it.
struct TlbEntry {
  static constexpr uint64_t kNoTag = 0x800;
  uint64_t tag = kNoTag;
  uintptr_t addend = 0;
};
struct FetchTlbEntry {
  uint64_t tag = TlbEntry::kNoTag;
  cpu::DecodedPage* page = nullptr;
  uint64_t page_index = 0;  // RAM page index
};

inline constexpr unsigned kTlbSize = 256;
inline constexpr unsigned kPrivLevels = 4;  // indexed by Privilege value (2 unused)

struct Hart::Impl {
  Impl(Bus& bus, const VirtualClock& clock);
  ~Impl();

  Bus& bus;
  GuestMemory& ram;
  const VirtualClock& clock;
  ArchState s{};

  // --- caches (not state: flushed on restore) ---
  std::array<std::array<TlbEntry, kTlbSize>, kPrivLevels> load_tlb;
  std::array<std::array<TlbEntry, kTlbSize>, kPrivLevels> store_tlb;
  std::array<std::array<FetchTlbEntry, kTlbSize>, kPrivLevels> fetch_tlb;
  uint64_t store_tlb_dirty_generation = 0;
  // The load/store TLB sets of the current data privilege (set at each block boundary).
  TlbEntry* cur_load_tlb = nullptr;
  TlbEntry* cur_store_tlb = nullptr;
  std::vector<std::unique_ptr<cpu::DecodedPage>> decoded_pages;  // by RAM page index
  bool code_written = false;      // a store hit a decoded page: leave the block
  std::vector<uint64_t> pending_invalidations;  // decoded pages to drop at the next fetch
  // The translator (docs/translator.md): on when jit is set; entries are translated once
  // they have been entered jit_heat times.
  uint16_t jit_heat = 8;
  std::unique_ptr<cpu::Jit> jit;
  bool irq_check_needed = true;   // interrupt-relevant state changed since the last check
  bool mmio_accessed = false;     // the last slow access went to a device

  // Traps taken in a row without an instruction retiring (see execute.cpp).
  static constexpr unsigned kMaxTrapsWithoutProgress = 1024;
  uint64_t last_trap_icount = ~uint64_t{0};
  unsigned traps_without_progress = 0;

  // Pending trap of the instruction being executed.
  Cause trap_cause{};
  uint64_t trap_tval = 0;

  Privilege priv() const { return static_cast<Privilege>(s.priv); }
  // Privilege used for data accesses (MPRV lets M-mode load/store as MPP).
  unsigned data_priv() const {
    if (s.priv == 3 && (s.mstatus & mstatus::kMPRV)) return (s.mstatus >> mstatus::kMPPShift) & 3;
    return s.priv;
  }

  // ---- trap.cpp ----
  void reset(uint64_t pc);
  // Enters the trap handler for an exception at `pc`; sets s.pc.
  void take_exception(Cause cause, uint64_t tval, uint64_t pc);
  // Takes the highest-priority enabled pending interrupt, if any. True if taken.
  bool take_pending_interrupt();
  void do_mret();
  void do_sret();
  void set_interrupt_pending(uint64_t mask, bool level);

  // ---- csr.cpp ----
  // Executes a CSR instruction. `icount_before` is the number of instructions retired
  // before this one. False = illegal instruction.
  bool csr_op(cpu::Op op, uint16_t number, uint64_t operand, bool writes,
              uint64_t& result, uint64_t icount_before);
  bool csr_read(uint16_t number, uint64_t& value, uint64_t icount_before) const;
  bool csr_write(uint16_t number, uint64_t value, uint64_t icount_before);
  void set_mstatus(uint64_t value);

  // ---- mmu.cpp ----
  void flush_tlbs();
  void flush_store_tlbs();
  // Translates `vaddr` for `access` at privilege `priv`. On failure sets trap_* and
  // returns false. Updates A/D bits in the page table as the hardware would.
  bool translate(uint64_t vaddr, Access access, unsigned priv, uint64_t& paddr);
  // Slow data paths (TLB miss, MMIO, misaligned). False = trap (trap_* set).
  bool load_slow(uint64_t vaddr, unsigned size, uint64_t& value);
  bool store_slow(uint64_t vaddr, unsigned size, uint64_t value);
  // Resolves the decoded page for fetching at `pc` (fills the fetch TLB). nullptr = trap.
  cpu::DecodedPage* fetch_page(uint64_t pc, uint64_t& page_index);
  // Reads instruction bits at pc (for an instruction that crosses a page). False = trap.
  bool fetch_bits_slow(uint64_t pc, uint32_t& bits);
  cpu::DecodedPage& decoded_page(uint64_t page_index);
  // Decodes the block starting at slot `slot` of a page (if not decoded yet) and returns
  // its entry index, or DecodedPage::kNone for an instruction that crosses the page end.
  uint16_t decode_block(cpu::DecodedPage& page, uint64_t page_index, unsigned slot);
  void on_code_write(uint64_t page_index);
  void apply_code_invalidations();
  void drop_decoded_code();
  // The translation of the block starting at `e` (an entry of `page`), translating it once
  // it is hot; nullptr: run it on the interpreter.
  cpu::JitCode jit_code(cpu::DecodedPage& page, const cpu::DecodedInsn* e);

  // ---- rv64fd.cpp ----
  // Executes an Op::FpOp. False = illegal instruction (FS off, or a reserved rounding mode).
  bool fp_op(const cpu::DecodedInsn& d);
  // The live host FP path (fpu.h, fpu::live): while fp_live_rm < 4, this thread's MXCSR
  // holds fpu::live::mxcsr_for(fp_live_rm) and guest flags not yet in s.fcsr; the host's
  // own MXCSR is in fp_host_mxcsr. fp_leave() folds the flags into s.fcsr and gives the
  // host its MXCSR back: called before fflags/frm/fcsr are read or written, before any
  // device access, and when Hart::run returns, so s.fcsr is exact whenever anything but
  // the FP instructions looks at it, and no host code runs with the guest's MXCSR.
  static constexpr uint8_t kFpNotLive = 0xff;
  uint8_t fp_live_rm = kFpNotLive;
  uint32_t fp_host_mxcsr = 0;
  void fp_live(unsigned rm) {
    if (fp_live_rm != rm) [[unlikely]] fp_enter(rm);
  }
  void fp_enter(unsigned rm);
  void fp_leave() {
    if (fp_live_rm != kFpNotLive) [[unlikely]] fp_leave_slow();
  }
  void fp_leave_slow();

  // ---- rv64a.cpp ----
  bool load_reserved(uint64_t vaddr, unsigned size, uint64_t& value);
  bool store_conditional(uint64_t vaddr, unsigned size, uint64_t value, uint64_t& result);
  bool amo(cpu::AmoFunc func, uint64_t vaddr, unsigned size, uint64_t operand, uint64_t& old);
  // Translates an AMO/SC address to a host pointer or device (store permission).
  bool amo_translate(uint64_t vaddr, unsigned size, uint64_t& paddr);

  // ---- execute.cpp ----
  HartStop run(uint64_t stop_icount);
};

}  // namespace tandem::vmm
