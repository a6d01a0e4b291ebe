#include "vmm/machine.h"

#include <spdlog/spdlog.h>
#include <xxhash.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <istream>
#include <ostream>

#include "vmm/cpu/hart.h"
#include "vmm/devices/clint.h"
#include "vmm/devices/test_finisher.h"
#include "vmm/devices/uart16550.h"
#include "vmm/fdt.h"

namespace tandem::vmm {

namespace {

constexpr uint16_t kCsrMie = 0x304;
constexpr uint16_t kCsrMcause = 0x342;
// Consecutive run slices that end in HartStop::Event without retiring anything before the
// guest is declared stuck (each is ~1000 traps, see the hart).
constexpr unsigned kStuckSlices = 4;
constexpr uint64_t kNoMorePages = UINT64_MAX;
constexpr char kMagic[5] = "TNDM";

class OstreamSink final : public StateSink {
 public:
  explicit OstreamSink(std::ostream& out) : out_(out) {}
  void write(const void* data, size_t len) override {
    out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(len));
  }

 private:
  std::ostream& out_;
};

class IstreamSource final : public StateSource {
 public:
  explicit IstreamSource(std::istream& in) : in_(in) {}
  void read(void* data, size_t len) override {
    in_.read(static_cast<char*>(data), static_cast<std::streamsize>(len));
    if (static_cast<size_t>(in_.gcount()) != len) {
      throw StateError("snapshot truncated at byte " + std::to_string(offset_ + in_.gcount()));
    }
    offset_ += len;
  }

 private:
  std::istream& in_;
  uint64_t offset_ = 0;
};

class HashSink final : public StateSink {
 public:
  HashSink() : state_(XXH3_createState()) { XXH3_64bits_reset(state_); }
  ~HashSink() override { XXH3_freeState(state_); }
  void write(const void* data, size_t len) override { XXH3_64bits_update(state_, data, len); }
  uint64_t digest() const { return XXH3_64bits_digest(state_); }

 private:
  XXH3_state_t* state_;
};

bool page_is_zero(const uint8_t* page) {
  const uint64_t* words = reinterpret_cast<const uint64_t*>(page);
  uint64_t any = 0;
  for (size_t i = 0; i < kPageSize / 8; ++i) any |= words[i];
  return any == 0;
}

}  // namespace

const char* to_string(Exit exit) {
  switch (exit) {
    case Exit::Running:
      return "running";
    case Exit::GuestPass:
      return "guest passed";
    case Exit::GuestFail:
      return "guest failed";
    case Exit::Reset:
      return "guest requested reset";
    case Exit::Idle:
      return "guest idle forever";
  }
  return "?";
}

// Hart interrupt lines: line n is mip bit n.
class Machine::HartIrqs final : public IrqSink {
 public:
  explicit HartIrqs(Hart& hart) : hart_(hart) {}
  void set_irq(unsigned line, bool level) override {
    hart_.set_interrupt_pending(uint64_t{1} << line, level);
  }

 private:
  Hart& hart_;
};

Machine::Machine(const MachineConfig& config, World& world)
    : config_(config),
      world_(world),
      memory_(kDramBase, config.mem_bytes),
      bus_(memory_),
      hart_(std::make_unique<Hart>(bus_, clock_)),
      hart_irqs_(std::make_unique<HartIrqs>(*hart_)) {
  BoardWiring wiring;
  wiring.hart_irqs = hart_irqs_.get();
  wiring.now_icount = [this] { return hart_->icount(); };
  wiring.console_output = [this](uint8_t byte) { world_.console_output(hart_->icount(), byte); };
  wiring.entropy = [this](std::span<uint8_t> out) { world_.entropy(hart_->icount(), out); };
  wiring.disk_path = config.disk_path;
  wiring.nic = config.nic;
  wiring.net_output = [this](std::span<const uint8_t> frame) { world_.output(OutputChannel::Net, hart_->icount(), frame); };
  board_ = std::make_unique<Board>(bus_, clock_, std::move(wiring));
}

Machine::~Machine() = default;

void Machine::load(const std::string& image_path) {
  const LoadedImage image = load_image(image_path, memory_);
  const std::vector<uint8_t> dtb = build_fdt({config_.mem_bytes, config_.bootargs, !config_.disk_path.empty()});
  const uint64_t dtb_addr = fdt_load_address(memory_.base(), memory_.size(), dtb.size());
  if (!memory_.contains(dtb_addr, dtb.size()) ||
      (image.lowest < dtb_addr + dtb.size() && dtb_addr < image.highest)) {
    throw LoadError(image_path + ": image overlaps the device tree at the top of RAM; use a larger --mem");
  }
  memory_.write(dtb_addr, dtb);
  enter(image.entry, dtb_addr, dtb.size());
}

namespace {

struct Placement {
  std::string what;
  uint64_t begin;
  uint64_t end;
};

std::string range(const Placement& p) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " [%#llx, %#llx)", static_cast<unsigned long long>(p.begin),
                static_cast<unsigned long long>(p.end));
  return p.what + buf;
}

}  // namespace

void Machine::boot(const BootImages& images) {
  if (images.bios.empty()) throw LoadError("a firmware boot needs --bios FILE");
  if (!images.initrd.empty() && images.kernel.empty()) throw LoadError("--initrd needs --kernel");
  std::vector<Placement> placed;
  const LoadedImage bios = load_image_at(images.bios, memory_, kDramBase);
  placed.push_back({"--bios " + images.bios, bios.lowest, bios.highest});
  if (!images.kernel.empty()) {
    const LoadedImage kernel = load_image_at(images.kernel, memory_, kKernelBase);
    placed.push_back({"--kernel " + images.kernel, kernel.lowest, kernel.highest});
  }
  // Firmware and kernel sit at fixed addresses; the initrd and the DTB are placed by us at the
  // top of RAM, so more RAM moves them out of the way.
  const size_t fixed = placed.size();
  std::vector<uint8_t> initrd;
  if (!images.initrd.empty()) initrd = read_guest_file(images.initrd);

  // The DTB's size does not depend on the initrd addresses (two u64 cells), so it is built
  // once to find its slot, then again with the initrd placed right below it.
  FdtConfig fdt_config{config_.mem_bytes, config_.bootargs, !config_.disk_path.empty()};
  if (!initrd.empty()) fdt_config.initrd_end = 1;
  std::vector<uint8_t> dtb = build_fdt(fdt_config);
  const uint64_t dtb_addr = fdt_load_address(memory_.base(), memory_.size(), dtb.size());
  if (!memory_.contains(dtb_addr, dtb.size())) {
    throw LoadError("the device tree (" + std::to_string(dtb.size()) + " bytes) does not fit in RAM");
  }
  if (!initrd.empty()) {
    const uint64_t room = dtb_addr - memory_.base();
    if (initrd.size() > room) {
      throw LoadError("--initrd " + images.initrd + ": " + std::to_string(initrd.size()) + " bytes do not fit in RAM below the device tree (" +
                      std::to_string(room) + " bytes; use a larger --mem)");
    }
    fdt_config.initrd_start = (dtb_addr - initrd.size()) & ~(kPageSize - 1);
    fdt_config.initrd_end = fdt_config.initrd_start + initrd.size();
    dtb = build_fdt(fdt_config);
    placed.push_back({"--initrd " + images.initrd, fdt_config.initrd_start, fdt_config.initrd_end});
  }
  placed.push_back({"the device tree", dtb_addr, dtb_addr + dtb.size()});
  for (size_t i = 0; i < placed.size(); ++i) {
    for (size_t j = i + 1; j < placed.size(); ++j) {
      if (placed[i].begin < placed[j].end && placed[j].begin < placed[i].end) {
        throw LoadError(range(placed[j]) + " overlaps " + range(placed[i]) +
                        (j >= fixed ? "; use a larger --mem" : ""));
      }
    }
  }
  if (!initrd.empty()) memory_.write(fdt_config.initrd_start, initrd);
  memory_.write(dtb_addr, dtb);
  enter(bios.entry, dtb_addr, dtb.size());
}

void Machine::enter(uint64_t entry, uint64_t dtb_addr, size_t dtb_bytes) {
  // a2: OpenSBI's fw_dynamic_info, as QEMU's reset vector passes it: the next stage at
  // 0x80200000 in S-mode. Other guests ignore a2. It sits just after the DTB.
  const uint64_t info_addr = (dtb_addr + dtb_bytes + 7) & ~uint64_t{7};
  const uint64_t fw_dynamic_info[6] = {0x4942534f /* "OSBI" */, 2, kKernelBase, 1 /* S */, 0, 0};
  const bool info_fits = memory_.write(
      info_addr, {reinterpret_cast<const uint8_t*>(fw_dynamic_info), sizeof fw_dynamic_info});
  hart_->reset(entry);
  hart_->set_reg(10, 0);         // a0: hart id
  hart_->set_reg(11, dtb_addr);  // a1: device tree
  hart_->set_reg(12, info_fits ? info_addr : 0);
  board_->refresh_irqs(hart_->icount());
}

uint64_t Machine::icount() const { return hart_->icount(); }

size_t Machine::console_input(std::span<const uint8_t> bytes) { return board_->uart().push_input(bytes); }

size_t Machine::console_input_space() const { return board_->uart().input_space(); }

bool Machine::net_input(std::span<const uint8_t> frame) {
  VirtioNet* net = board_->net();
  return net && net->receive(frame);
}

bool Machine::net_can_receive() const {
  const VirtioNet* net = board_->net();
  return net && net->can_receive();
}

void Machine::net_set_link(bool up) {
  if (VirtioNet* net = board_->net()) net->set_link(up);
}

uint64_t Machine::next_timer_deadline() const { return board_->clint().mtimecmp(); }

RunResult Machine::finish_result() const {
  const TestFinisher& f = board_->finisher();
  switch (f.result()) {
    case FinisherResult::Pass:
      return {Exit::GuestPass, 0, icount()};
    case FinisherResult::Fail:
      return {Exit::GuestFail, f.fail_code(), icount()};
    case FinisherResult::Reset:
      return {Exit::Reset, 0, icount()};
    case FinisherResult::None:
      break;
  }
  return {Exit::Running, 0, icount()};
}

void Machine::serve(uint64_t now) {
  last_service_icount_ = now;
  world_.service(*this);
  board_->clint().update_timer(now);  // the World may have moved the clock
}

RunResult Machine::run_until(uint64_t target) {
  Clint& clint = board_->clint();
  unsigned slices_without_progress = 0;
  for (;;) {
    if (board_->finisher().result() != FinisherResult::None) return finish_result();
    const uint64_t now = hart_->icount();
    uint64_t service_at = world_.next_service_icount(now);
    if (service_at <= now) {
      if (last_service_icount_ != now) {
        serve(now);
        continue;
      }
      service_at = now + 1;  // served here already: run on
    }
    if (now >= target) return {Exit::Running, 0, now};

    const uint64_t stop = std::min({target, service_at, clint.timer_deadline_icount(now)});
    bus_.clear_stop();
    const HartStop why = hart_->run(stop);
    const uint64_t after = hart_->icount();
    // MTIP is a level of mtime >= mtimecmp; we stopped exactly where it may have risen.
    clint.update_timer(after);
    if (bus_.stop_requested() && board_->finisher().result() != FinisherResult::None) {
      return finish_result();
    }
    // The hart hands back control (Event) after many traps that retire nothing: a trap
    // vector that itself faults. Nothing can ever change that (interrupts enter the same
    // vector), so after a few such slices the run ends instead of spinning forever.
    if (why == HartStop::Event && after == now && !bus_.stop_requested()) {
      if (++slices_without_progress >= kStuckSlices) {
        spdlog::warn("guest stuck at icount {}: traps at pc {:#x} (mcause {:#x}) retire no instruction; stopping",
                     after, hart_->pc(), hart_->csr(kCsrMcause));
        return {Exit::Idle, 0, after};
      }
    } else {
      slices_without_progress = 0;
    }
    // A service point is served as soon as it is reached, also when it is the target: a
    // snapshot taken at N is then "after the service at N" whichever way N was reached.
    if (after == service_at && last_service_icount_ != after) serve(after);

    if (why == HartStop::Wfi && !hart_->wfi_wakeup_pending()) {
      // The guest sleeps. Only the timer (if it can wake the hart) or the World can end it.
      const bool timer_can_wake = hart_->csr(kCsrMie) & kMipMTIP;
      const uint64_t deadline = timer_can_wake ? clint.mtimecmp() : UINT64_MAX;
      if (!world_.idle(*this, deadline)) return {Exit::Idle, 0, after};
      clint.update_timer(after);
    }
  }
}

void Machine::save(std::ostream& out) const {
  OstreamSink sink(out);
  StateWriter writer(sink);
  save(writer);
  out.flush();
  if (!out) throw StateError("snapshot: write failed");
}

void Machine::restore(std::istream& in) {
  IstreamSource source(in);
  StateReader reader(source);
  restore(reader);
}

// The save() stream with each RAM page's 4096 bytes replaced by its XXH3-64, so an audit
// rehashes only the pages written since the previous one (GuestMemory caches the rest).
uint64_t Machine::state_hash() const { return state_hash(/*use_page_cache=*/true); }

uint64_t Machine::state_hash_uncached() const { return state_hash(/*use_page_cache=*/false); }

uint64_t Machine::state_hash(bool use_page_cache) const {
  HashSink sink;
  StateWriter writer(sink);
  save_core(writer);
  writer.tag("RAM ");
  const auto add_page = [&writer](uint64_t index, uint64_t page_hash) {
    writer.u64(index);
    writer.u64(page_hash);
  };
  if (use_page_cache) {
    memory_.for_each_page_hash(add_page);
  } else {
    memory_.for_each_page_hash_uncached(add_page);
  }
  writer.u64(kNoMorePages);
  writer.tag("END ");
  return sink.digest();
}

void Machine::save_core(StateWriter& out) const {
  out.tag(kMagic);
  out.pod(kSnapshotVersion);
  out.u64(config_.mem_bytes);
  out.u64(hart_->icount());
  out.tag("CLOK");
  out.u64(clock_.offset_ticks());
  hart_->save(out);
  board_->save(out);
}

void Machine::save(StateWriter& out) const {
  save_core(out);
  out.tag("RAM ");
  // Never-touched and all-zero pages are left out: restore starts from zeroed RAM.
  for (uint64_t p = 0; p < memory_.page_count(); ++p) {
    if (!memory_.page_touched(p)) continue;
    const uint8_t* page = memory_.host(memory_.base() + (p << kPageShift));
    if (page_is_zero(page)) continue;
    out.u64(p);
    out.bytes(page, kPageSize);
  }
  out.u64(kNoMorePages);
  out.tag("END ");
}

void Machine::restore_core(StateReader& in) {
  in.expect_tag(kMagic);
  uint32_t version;
  in.pod(version);
  if (version != kSnapshotVersion) {
    throw StateError("snapshot format version " + std::to_string(version) + " is not supported (expected " +
                     std::to_string(kSnapshotVersion) + ")");
  }
  const uint64_t mem_bytes = in.u64();
  if (mem_bytes != config_.mem_bytes) {
    throw StateError("snapshot has " + std::to_string(mem_bytes >> 20) + " MiB of RAM, this machine " +
                     std::to_string(config_.mem_bytes >> 20) + " MiB (use --mem " +
                     std::to_string(mem_bytes >> 20) + ")");
  }
  const uint64_t saved_icount = in.u64();
  in.expect_tag("CLOK");
  clock_.set_offset_ticks(in.u64());
  hart_->restore(in);
  hart_->set_icount(saved_icount);
  board_->restore(in);
  last_service_icount_ = UINT64_MAX;
  bus_.clear_stop();
  board_->refresh_irqs(hart_->icount());
}

void Machine::restore(StateReader& in) {
  restore_core(in);
  in.expect_tag("RAM ");
  memory_.clear();
  std::array<uint8_t, kPageSize> page;
  uint64_t previous = 0;
  bool first = true;
  for (;;) {
    const uint64_t index = in.u64();
    if (index == kNoMorePages) break;
    if (index >= memory_.page_count() || (!first && index <= previous)) {
      throw StateError("snapshot: RAM page index " + std::to_string(index) + " is out of order or range");
    }
    in.bytes(page.data(), page.size());
    memory_.write(memory_.base() + (index << kPageShift), page);
    previous = index;
    first = false;
  }
  in.expect_tag("END ");
  // The next incremental checkpoint after a restore must be complete.
  memory_.mark_all_dirty();
  last_service_icount_ = UINT64_MAX;
  bus_.clear_stop();
  board_->refresh_irqs(hart_->icount());
}

}  // namespace tandem::vmm
