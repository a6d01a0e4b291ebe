#pragma once
// The RV64GC hart (RV64IMAFDC, M/S/U, Zicsr, Zifencei, Sv39). This header is the contract between
// the CPU and the machine: the machine owns the bus, the clock and the run loop; the hart
// executes instructions and keeps an exact retired-instruction count (icount).
//
// Interrupt lines: devices (CLINT, PLIC) drive the hardware-owned mip bits through
// set_interrupt_pending(); the hart samples mip & mie at instruction boundaries.
#include <cstdint>
#include <memory>
#include <string>

#include "vmm/bus.h"
#include "vmm/clock.h"
#include "vmm/state_io.h"

namespace tandem::vmm {

// mip / mie bit numbers.
inline constexpr uint64_t kMipSSIP = 1u << 1;
inline constexpr uint64_t kMipMSIP = 1u << 3;
inline constexpr uint64_t kMipSTIP = 1u << 5;
inline constexpr uint64_t kMipMTIP = 1u << 7;
inline constexpr uint64_t kMipSEIP = 1u << 9;
inline constexpr uint64_t kMipMEIP = 1u << 11;

enum class Privilege : uint8_t { User = 0, Supervisor = 1, Machine = 3 };

// How the hart executes guest code. Both engines give the same state at every icount
// (docs/translator.md); the translator runs only on x86-64 hosts (elsewhere it is the
// interpreter).
enum class CpuEngine : uint8_t { Interpreter, Translator };
// The engine new harts start with (process-wide; `tandem --cpu` sets it).
void set_default_cpu_engine(CpuEngine engine);
CpuEngine default_cpu_engine();
// "interp" / "jit"; false for anything else.
bool parse_cpu_engine(const std::string& name, CpuEngine& engine);

enum class HartStop {
  Budget,  // icount reached the requested stop icount exactly
  Wfi,     // executed WFI with no enabled interrupt pending; pc is past the WFI
  Event,   // the bus asked to stop (test finisher) or an MMIO/CSR access changed
           // interrupt-relevant state; the machine re-evaluates and calls run() again
};

// Semantics the machine can rely on (details in vmm/cpu/*.cpp):
// - icount counts retired instructions. An instruction that traps does not retire; taking
//   an interrupt retires nothing. WFI retires.
// - run() returns HartStop::Event right after every store to a device (the store has
//   retired), whenever bus.stop_requested() is set, and, as a safety valve, after 1024
//   traps in a row without a retired instruction (a trap vector that itself faults).
// - During a device access, icount() is exact: the instructions retired before it.
// - Misaligned loads and stores are performed (as qemu-system-riscv64 7.2 does); LR/SC and
//   AMOs trap when misaligned. Instructions are fetched from RAM only.
// - Everything guest-visible depends only on icount and the clock, never on host time.

class Hart {
 public:
  Hart(Bus& bus, const VirtualClock& clock);
  ~Hart();
  Hart(const Hart&) = delete;
  Hart& operator=(const Hart&) = delete;

  // Reset to M-mode at `pc`, all CSRs at their reset values, icount kept as is.
  void reset(uint64_t pc);

  // Executes until icount() == stop_icount (exactly), or an earlier stop (see HartStop).
  // Interrupts that are pending and enabled are taken before the next instruction.
  HartStop run(uint64_t stop_icount);

  // Selects the execution engine (takes effect at the next run()). Not state: snapshots and
  // state hashes are the same on both. The translator translates a block once it has been
  // entered `translate_after` times (tests use 1).
  void set_engine(CpuEngine engine, unsigned translate_after = 8);
  CpuEngine engine() const;

  uint64_t icount() const;
  void set_icount(uint64_t icount);

  // Hardware-driven mip bits (MSIP, MTIP, MEIP, SEIP). STIP/SSIP are software-writable
  // through the CSRs as the privileged spec says.
  void set_interrupt_pending(uint64_t mask, bool level);
  uint64_t mip() const;
  // True if some interrupt is pending and enabled in mie (regardless of mstatus.xIE): the
  // condition that ends a WFI.
  bool wfi_wakeup_pending() const;

  uint64_t pc() const;
  void set_pc(uint64_t pc);
  uint64_t reg(unsigned index) const;
  void set_reg(unsigned index, uint64_t value);
  // f registers as raw 64-bit patterns (binary32 values NaN-boxed).
  uint64_t freg(unsigned index) const;
  void set_freg(unsigned index, uint64_t value);
  Privilege privilege() const;
  // CSR access for tests and the debugger (no privilege checks, no side effects).
  uint64_t csr(uint16_t number) const;

  void save(StateWriter& out) const;
  void restore(StateReader& in);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::vmm
