#pragma once
// The Machine: RAM + bus + hart + the virt board + the run loop. This is the API the rest
// of Tandem (tools, checkpoint, replicator) uses. Everything here is deterministic: the
// same image and the same World inputs at the same icounts give the same state hash at
// every icount. The only doors to the outside are the World calls.
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vmm/board.h"
#include "vmm/bus.h"
#include "vmm/clock.h"
#include "vmm/guest_memory.h"
#include "vmm/loader.h"
#include "vmm/state_io.h"
#include "vmm/world.h"

namespace tandem::vmm {

class Hart;

struct MachineConfig {
  uint64_t mem_bytes = kDefaultMemBytes;
  std::string disk_path;  // empty: no virtio-blk
  std::string bootargs;   // /chosen/bootargs
  std::optional<NicConfig> nic;  // empty: no virtio-net
};

enum class Exit {
  Running,    // stopped at the requested icount; call run_until again to continue
  GuestPass,  // test finisher 0x5555
  GuestFail,  // test finisher (code << 16) | 0x3333; RunResult::code holds the code
  Reset,      // test finisher 0x7777: Tandem ends the run (status 0)
  Idle,       // the guest can make no progress: it waits for an event the World says will
              // never come, or it traps forever without retiring an instruction
};

struct RunResult {
  Exit exit = Exit::Running;
  uint32_t code = 0;
  uint64_t icount = 0;
};

const char* to_string(Exit exit);

// Where the second boot stage goes: what OpenSBI's fw_jump jumps to (FW_JUMP_ADDR), as QEMU.
inline constexpr uint64_t kKernelBase = kDramBase + 0x200000;

// A firmware boot (`tandem run --bios F --kernel K --initrd I`); bootargs come from
// MachineConfig. Layout: firmware at kDramBase (raw) or its ELF addresses, kernel at
// kKernelBase (raw) or its ELF addresses, the DTB in the top 64 KiB-aligned slot of RAM, the
// initrd page-aligned right below the DTB. Nothing may overlap.
struct BootImages {
  std::string bios;    // required; entered in M-mode
  std::string kernel;  // optional
  std::string initrd;  // optional; requires kernel
};

class Machine {
 public:
  // 2: the hart has no PMP registers (read-only zero) and keeps menvcfg/senvcfg.FIOM.
  // 3: "VBLK" holds the disk's content hash over 64 KiB block hashes (DiskImage), no longer
  // XXH3 of the whole image: a version-2 snapshot would be refused as "not the image the
  // snapshot was taken with", so it is refused up front with its version.
  // 4: the hart has F and D (f0..f31, fcsr, mstatus.FS; hart state version 3).
  static constexpr uint32_t kSnapshotVersion = 4;

  Machine(const MachineConfig& config, World& world);
  ~Machine();
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Loads a guest image, places the device tree near the top of RAM and resets the hart
  // to M-mode at the entry with a0 = hart id 0, a1 = DTB address. Throws LoadError.
  void load(const std::string& image_path);

  // Loads firmware, kernel and initrd (see BootImages) and the DTB (with
  // linux,initrd-start/end), then resets the hart as load() does, at the firmware's entry.
  // Throws LoadError (one line) for an unreadable, empty or malformed file, an image that
  // does not fit in RAM, or two images that overlap.
  void boot(const BootImages& images);

  // Runs until icount() == target exactly, or until the guest ends the run (finisher) or
  // idles forever. Calling it again after an exit returns the same exit.
  // The World is served whenever the icount reaches its next_service_icount(), including
  // when that is the target (before returning); WFI with nothing pending calls idle().
  RunResult run_until(uint64_t target);

  uint64_t icount() const;
  const MachineConfig& config() const { return config_; }

  // Host → guest console bytes (called by the World). Returns how many were accepted;
  // the UART FIFO holds at most console_input_space() more.
  size_t console_input(std::span<const uint8_t> bytes);
  size_t console_input_space() const;

  // Host → guest network frames (called by the World at service points; a logged input).
  // True if the frame is now in a guest receive buffer; false if the NIC dropped (and
  // counted) it, or the machine has no NIC.
  bool net_input(std::span<const uint8_t> frame);
  // True if the NIC has a receive buffer for a frame now (a World holds frames until then).
  // Changes no machine state.
  bool net_can_receive() const;
  // Link up/down as the guest sees it (also a logged input).
  void net_set_link(bool up);
  bool has_nic() const { return board_->net() != nullptr; }

  VirtualClock& clock() { return clock_; }
  // The mtime at which the timer interrupt fires (UINT64_MAX if none is armed).
  uint64_t next_timer_deadline() const;

  // 1 bit per 4 KiB page written since the last call; get-and-clear.
  std::vector<uint64_t> take_dirty_bitmap() { return memory_.take_dirty_bitmap(); }

  // The complete machine: header + version, clock, hart, devices, RAM (touched non-zero
  // pages only), disk write-state. restore() throws StateError on a truncated, corrupt or
  // mismatched stream and leaves the machine in need of a fresh load/restore.
  void save(std::ostream& out) const;
  void restore(std::istream& in);
  void save(StateWriter& out) const;
  void restore(StateReader& in);
  // XXH3-64 over the save() stream with each RAM page's bytes replaced by the page's own
  // XXH3-64 (docs/vmm.md). Page hashes are cached: only pages written since the last call
  // are rehashed. A pure function of the machine state, like save().
  uint64_t state_hash() const;
  // The same value computed from scratch, without the page hash cache (for tests). The disk's
  // part is still DiskImage::content_hash() (its block cache): check it with content_hash_uncached().
  uint64_t state_hash_uncached() const;

  // The same stream without RAM (header, clock, hart, devices), for checkpoint/, which
  // carries RAM pages and disk blocks itself. save() == save_core() + RAM + "END ".
  // restore_core() leaves RAM alone; like restore() it throws StateError and a failure
  // part-way leaves the machine in need of a fresh load/restore.
  void save_core(StateWriter& out) const;
  void restore_core(StateReader& in);

  GuestMemory& memory() { return memory_; }
  Bus& bus() { return bus_; }
  Hart& hart() { return *hart_; }
  Board& board() { return *board_; }
  World& world() { return world_; }

 private:
  class HartIrqs;
  RunResult finish_result() const;
  uint64_t state_hash(bool use_page_cache) const;
  void enter(uint64_t entry, uint64_t dtb_addr, size_t dtb_bytes);
  void serve(uint64_t now);

  MachineConfig config_;
  World& world_;
  VirtualClock clock_;
  GuestMemory memory_;
  Bus bus_;
  std::unique_ptr<Hart> hart_;
  std::unique_ptr<HartIrqs> hart_irqs_;
  std::unique_ptr<Board> board_;
  // The icount at which service() last ran, so a World returning "now" is served once per
  // icount. Not part of the snapshot: a service point reached at icount N is served before
  // run_until(N) returns, so a restored machine never owes a service at its start.
  uint64_t last_service_icount_ = UINT64_MAX;
};

}  // namespace tandem::vmm
