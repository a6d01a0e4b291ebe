#include "vmm/boot_spec.h"

#include "vmm/machine.h"

namespace tandem::vmm {

std::optional<BootRuleBroken> BootSpec::check() const {
  if (!guest.empty() && !bios.empty()) return BootRuleBroken{BootField::Bios, BootField::Guest, true};
  if (!kernel.empty() && bios.empty()) return BootRuleBroken{BootField::Kernel, BootField::Bios, false};
  if (!initrd.empty() && kernel.empty()) return BootRuleBroken{BootField::Initrd, BootField::Kernel, false};
  if (!append.empty() && kernel.empty()) return BootRuleBroken{BootField::Append, BootField::Kernel, false};
  return std::nullopt;
}

void BootSpec::load_into(Machine& machine) const {
  if (!bios.empty()) {
    machine.boot(BootImages{bios, kernel, initrd});
  } else {
    machine.load(guest);
  }
}

std::string_view BootSpec::cli_name(BootField field) {
  switch (field) {
    case BootField::Guest:
      return "GUEST";
    case BootField::Bios:
      return "--bios";
    case BootField::Kernel:
      return "--kernel";
    case BootField::Initrd:
      return "--initrd";
    case BootField::Append:
      return "--append";
  }
  return "?";
}

std::string BootSpec::describe_for_cli(const BootRuleBroken& broken) {
  if (broken.excludes) {
    return "GUEST and --bios exclude each other (GUEST is a bare image entered in M-mode; --bios boots firmware)";
  }
  if (broken.field == BootField::Kernel) {
    return "--kernel needs --bios FILE (the SBI firmware the kernel runs under, e.g. "
           "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_jump.bin)";
  }
  return std::string(cli_name(broken.field)) + " needs " + std::string(cli_name(broken.other)) +
         " (the kernel command line and initial ramdisk are for a firmware boot's kernel)";
}

}  // namespace tandem::vmm
