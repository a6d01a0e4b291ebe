#pragma once
// BootSpec: what a machine boots, and the rules the combination must follow. One copy of
// the rules for every front end (`tandem run/record/replay`, tandemd's [vm] section): a
// bare GUEST image entered in M-mode, or a firmware boot as QEMU's
// -bios/-kernel/-initrd/-append.
#include <optional>
#include <string>
#include <string_view>

namespace tandem::vmm {

class Machine;

enum class BootField { Guest, Bios, Kernel, Initrd, Append };

// A broken rule: `field` excludes `other` (both given), or `field` needs `other` (missing).
// Each front end words it with its own option names (see BootSpec::describe).
struct BootRuleBroken {
  BootField field;
  BootField other;
  bool excludes;
};

struct BootSpec {
  std::string guest{};   // bare image (ELF64 or raw at 0x80000000), entered in M-mode
  std::string bios{};    // firmware (e.g. OpenSBI fw_jump.bin); instead of guest
  std::string kernel{};  // what the firmware starts; needs bios
  std::string initrd{};  // needs kernel
  std::string append{};  // kernel command line (/chosen bootargs); needs kernel

  // Nothing to boot (neither guest nor bios).
  bool empty() const { return guest.empty() && bios.empty(); }

  // The rules: guest and bios exclude each other; kernel needs bios; initrd and append
  // need kernel. The first one broken, or nullopt. Says nothing about whether the files
  // exist or load (Machine::load/boot throw LoadError for that).
  std::optional<BootRuleBroken> check() const;

  // The file an event log header names and digests: the guest, or a firmware boot's
  // firmware (the kernel, initrd and bootargs are covered by the initial state hash).
  const std::string& log_image() const { return guest.empty() ? bios : guest; }

  // The image that makes this VM what it is (a vm id, tandemd's log lines): the guest, or
  // a firmware boot's kernel (not the firmware), or the firmware alone.
  const std::string& identity_image() const {
    if (!guest.empty()) return guest;
    return kernel.empty() ? bios : kernel;
  }

  // Loads what the spec names into `machine` (Machine::load or Machine::boot); the boot
  // arguments go in MachineConfig::bootargs (= append) before the machine is built.
  // Throws LoadError.
  void load_into(Machine& machine) const;

  // The command-line wording of `tandem`: "--kernel needs --bios FILE (...)".
  static std::string describe_for_cli(const BootRuleBroken& broken);
  // The option name of a field on tandem's command line ("GUEST", "--bios", ...).
  static std::string_view cli_name(BootField field);
};

}  // namespace tandem::vmm
