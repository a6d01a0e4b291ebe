// Public face of the hart: construction, accessors and snapshots.
#include "vmm/cpu/hart.h"

#include <algorithm>

#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

namespace {
CpuEngine g_default_engine = CpuEngine::Interpreter;
}  // namespace

void set_default_cpu_engine(CpuEngine engine) { g_default_engine = engine; }
CpuEngine default_cpu_engine() { return g_default_engine; }
bool parse_cpu_engine(const std::string& name, CpuEngine& engine) {
  if (name == "interp") {
    engine = CpuEngine::Interpreter;
  } else if (name == "jit") {
    engine = CpuEngine::Translator;
  } else {
    return false;
  }
  return true;
}

namespace {
// 2: no PMP registers, menvcfg/senvcfg added; 3: F and D (f registers, fcsr, mstatus.FS)
constexpr uint64_t kStateVersion = 3;
}

Hart::Impl::Impl(Bus& bus_in, const VirtualClock& clock_in)
    : bus(bus_in), ram(bus_in.ram()), clock(clock_in) {
  ram.set_code_write_listener([this](uint64_t page_index) { on_code_write(page_index); });
  store_tlb_dirty_generation = ram.dirty_generation();
  reset(ram.base());
}

Hart::Impl::~Impl() { ram.set_code_write_listener({}); }

Hart::Hart(Bus& bus, const VirtualClock& clock) : impl_(std::make_unique<Impl>(bus, clock)) {
  set_engine(g_default_engine);
}
Hart::~Hart() = default;

void Hart::reset(uint64_t pc) { impl_->reset(pc); }
HartStop Hart::run(uint64_t stop_icount) {
  // Whatever way the run ends, fcsr gets the flags still in MXCSR and the host its MXCSR.
  struct FpLeave {
    Impl& impl;
    ~FpLeave() { impl.fp_leave(); }
  } leave{*impl_};
  return impl_->run(stop_icount);
}
void Hart::set_engine(CpuEngine engine, unsigned translate_after) {
  impl_->jit_heat = static_cast<uint16_t>(std::clamp(translate_after, 1u, 1000u));
  if (engine == CpuEngine::Translator && cpu::jit_supported()) {
    if (!impl_->jit) impl_->jit = std::make_unique<cpu::Jit>();
  } else if (impl_->jit) {
    impl_->drop_decoded_code();  // drops every translation with the decoded pages
    impl_->jit.reset();
  }
}
CpuEngine Hart::engine() const {
  return impl_->jit ? CpuEngine::Translator : CpuEngine::Interpreter;
}
uint64_t Hart::icount() const { return impl_->s.icount; }
void Hart::set_icount(uint64_t icount) { impl_->s.icount = icount; }

void Hart::set_interrupt_pending(uint64_t mask, bool level) {
  impl_->set_interrupt_pending(mask, level);
}
uint64_t Hart::mip() const { return impl_->s.mip; }
bool Hart::wfi_wakeup_pending() const { return (impl_->s.mip & impl_->s.mie) != 0; }

uint64_t Hart::pc() const { return impl_->s.pc; }
void Hart::set_pc(uint64_t pc) { impl_->s.pc = pc; }
uint64_t Hart::reg(unsigned index) const { return index < 32 ? impl_->s.regs[index] : 0; }
void Hart::set_reg(unsigned index, uint64_t value) {
  if (index > 0 && index < 32) impl_->s.regs[index] = value;
}
uint64_t Hart::freg(unsigned index) const { return index < 32 ? impl_->s.fregs[index] : 0; }
void Hart::set_freg(unsigned index, uint64_t value) {
  if (index < 32) impl_->s.fregs[index] = value;
}
Privilege Hart::privilege() const { return impl_->priv(); }

uint64_t Hart::csr(uint16_t number) const {
  // Read as M-mode would, at the current icount, without side effects.
  Impl& impl = *impl_;
  const uint8_t saved_priv = impl.s.priv;
  impl.s.priv = 3;
  uint64_t value = 0;
  if (!impl.csr_read(number, value, impl.s.icount)) value = 0;
  impl.s.priv = saved_priv;
  return value;
}

void Hart::save(StateWriter& out) const {
  out.tag("HART");
  out.u64(kStateVersion);
  out.pod(impl_->s);
}

void Hart::restore(StateReader& in) {
  in.expect_tag("HART");
  const uint64_t version = in.u64();
  if (version != kStateVersion) {
    throw StateError("snapshot: unsupported hart state version " + std::to_string(version));
  }
  ArchState loaded;
  in.pod(loaded);
  if (loaded.priv != 0 && loaded.priv != 1 && loaded.priv != 3) {
    throw StateError("snapshot: invalid hart privilege level");
  }
  // Values no CSR write could have produced mean the snapshot is corrupt.
  const uint64_t satp_mode = loaded.satp >> 60;
  if ((satp_mode != 0 && satp_mode != 8) || (loaded.mtvec & 3) >= 2 || (loaded.stvec & 3) >= 2 ||
      ((loaded.mstatus >> mstatus::kMPPShift) & 3) == 2 || loaded.reservation_valid > 1 ||
      (loaded.mstatus & mstatus::kSD) || loaded.fcsr > 0xff) {
    throw StateError("snapshot: invalid hart CSR values");
  }
  loaded.regs[0] = 0;
  Impl& impl = *impl_;
  impl.s = loaded;
  // Caches are not state: rebuild them from the restored architecture.
  for (auto& set : impl.load_tlb) set.fill(TlbEntry{});
  impl.flush_store_tlbs();
  impl.drop_decoded_code();
  impl.store_tlb_dirty_generation = impl.ram.dirty_generation();
  impl.irq_check_needed = true;
  impl.mmio_accessed = false;
}

}  // namespace tandem::vmm
