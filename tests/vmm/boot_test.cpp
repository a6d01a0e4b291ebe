// Machine::boot: firmware + kernel + initrd placement (QEMU virt layout), the device tree's
// /chosen initrd range and bootargs, refused layouts (too big, overlapping, unreadable), and
// the 16-bit finisher write OpenSBI's SBI SRST shutdown uses.
extern "C" {
#include <libfdt.h>
}
#include <gtest/gtest.h>
#include <unistd.h>

#include <elf.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/vmm/elf_image.h"
#include "tests/vmm/rv_asm.h"
#include "tests/vmm/scratch_dir.h"
#include "vmm/cpu/hart.h"
#include "vmm/machine.h"

namespace tandem::vmm {
namespace {

using namespace testing;  // rv_asm registers

struct QuietWorld : World {
  uint64_t next_service_icount(uint64_t) override { return UINT64_MAX; }
  void service(Machine&) override {}
  bool idle(Machine&, uint64_t) override { return false; }
  void output(OutputChannel, uint64_t, std::span<const uint8_t>) override {}
  void entropy(uint64_t, std::span<uint8_t> out) override { std::fill(out.begin(), out.end(), 0); }
};

constexpr uint64_t kMib = 1 << 20;

class BootTest : public ::testing::Test {
 protected:
  std::string file(const std::string& name, const std::vector<uint8_t>& bytes) { return scratch.write(name, bytes); }
  // `size` bytes of a recognisable pattern.
  static std::vector<uint8_t> pattern(size_t size, uint8_t seed) {
    std::vector<uint8_t> out(size);
    for (size_t i = 0; i < size; ++i) out[i] = static_cast<uint8_t>(i * 31 + seed);
    return out;
  }
  // A raw Linux Image header claiming `image_size` bytes in memory (file is just the header).
  static std::vector<uint8_t> linux_image(uint64_t image_size) {
    std::vector<uint8_t> out(64, 0);
    std::memcpy(out.data() + 16, &image_size, sizeof image_size);
    std::memcpy(out.data() + 48, "RISCV\0\0\0", 8);
    std::memcpy(out.data() + 56, "RSC\x05", 4);
    return out;
  }
  static MachineConfig config(uint64_t mem_mib, std::string bootargs = "") {
    MachineConfig c;
    c.mem_bytes = mem_mib * kMib;
    c.bootargs = std::move(bootargs);
    return c;
  }
  std::string boot_error(const MachineConfig& c, const BootImages& images) {
    Machine m(c, world);
    try {
      m.boot(images);
    } catch (const LoadError& e) {
      const std::string what = e.what();
      EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
      return what;
    }
    return "<no error>";
  }
  static uint64_t chosen_u64(const uint8_t* fdt, const char* prop) {
    const int chosen = fdt_path_offset(fdt, "/chosen");
    int len = 0;
    const void* v = fdt_getprop(fdt, chosen, prop, &len);
    if (!v || len != 8) return 0;
    fdt64_t cell;  // properties are only 4-byte aligned
    std::memcpy(&cell, v, sizeof cell);
    return fdt64_to_cpu(cell);
  }

  QuietWorld world;
  tandem::test::ScratchDir scratch{"tandem_boot_test_"};
  const std::filesystem::path& dir = scratch.path();
};

TEST_F(BootTest, PlacesFirmwareKernelInitrdAndDeviceTree) {
  const auto bios = pattern(5000, 1), kernel = pattern(300000, 2), initrd = pattern(123457, 3);
  Machine m(config(64, "console=ttyS0 earlycon=sbi"), world);
  m.boot({file("fw.bin", bios), file("Image", kernel), file("initrd.cpio", initrd)});

  EXPECT_EQ(m.hart().pc(), kDramBase);
  EXPECT_EQ(m.hart().privilege(), Privilege::Machine);
  EXPECT_EQ(m.hart().reg(a0), 0u);
  std::vector<uint8_t> got(kernel.size());
  ASSERT_TRUE(m.memory().read(kDramBase, {got.data(), bios.size()}));
  EXPECT_TRUE(std::equal(bios.begin(), bios.end(), got.begin()));
  ASSERT_TRUE(m.memory().read(kKernelBase, got));
  EXPECT_EQ(got, kernel);

  const uint64_t dtb = m.hart().reg(a1);
  EXPECT_EQ(dtb % (64 * 1024), 0u);
  EXPECT_GE(dtb, kDramBase + 63 * kMib);
  const uint8_t* fdt = m.memory().host(dtb);
  ASSERT_EQ(fdt_check_header(fdt), 0);
  const uint64_t start = chosen_u64(fdt, "linux,initrd-start");
  const uint64_t end = chosen_u64(fdt, "linux,initrd-end");
  EXPECT_EQ(start % 4096, 0u);
  EXPECT_EQ(end - start, initrd.size());
  EXPECT_LE(end, dtb) << "the initrd sits below the device tree";
  EXPECT_GT(start, dtb - 4096 - initrd.size()) << "and right below it (high in RAM)";
  got.resize(initrd.size());
  ASSERT_TRUE(m.memory().read(start, got));
  EXPECT_EQ(got, initrd);
  const int chosen = fdt_path_offset(fdt, "/chosen");
  EXPECT_STREQ(static_cast<const char*>(fdt_getprop(fdt, chosen, "bootargs", nullptr)), "console=ttyS0 earlycon=sbi");
}

TEST_F(BootTest, NoInitrdNoBootargsMeansNoChosenEntries) {
  Machine m(config(16), world);
  m.boot({file("fw.bin", pattern(100, 1)), file("Image", pattern(100, 2)), ""});
  const uint8_t* fdt = m.memory().host(m.hart().reg(a1));
  const int chosen = fdt_path_offset(fdt, "/chosen");
  EXPECT_EQ(fdt_getprop(fdt, chosen, "linux,initrd-start", nullptr), nullptr);
  EXPECT_EQ(fdt_getprop(fdt, chosen, "bootargs", nullptr), nullptr);
  EXPECT_NE(fdt_getprop(fdt, chosen, "stdout-path", nullptr), nullptr);
}

// A one-segment RISC-V ELF: `code` at physical `paddr` / virtual `vaddr`, `bss` more bytes
// in memory, entry at `vaddr + entry_offset`; the segment page-aligned in the file, as a
// linked kernel's is.
std::vector<uint8_t> elf_image(uint64_t paddr, uint64_t vaddr, const std::vector<uint8_t>& code, uint64_t bss,
                               uint64_t entry_offset) {
  return test::elf_image({.paddr = paddr, .vaddr = vaddr, .code = code, .bss = bss,
                          .entry_offset = entry_offset, .file_offset = 0x1000});
}

TEST_F(BootTest, KernelElfLinkedOutsideRamGoesWhereItsImageWould) {
  // Linux's vmlinux: physical addresses from 0, virtual 0xffffffff80000000.
  const auto code = pattern(8192, 4);
  Machine m(config(16), world);
  m.boot({file("fw.bin", pattern(100, 1)), file("vmlinux", elf_image(0, 0xffffffff80000000, code, 4096, 0x40)), ""});
  std::vector<uint8_t> got(code.size());
  ASSERT_TRUE(m.memory().read(kKernelBase, got));
  EXPECT_EQ(got, code);
  // The firmware still starts (fw_jump jumps to 0x80200000 itself); the ELF's own entry,
  // moved with its segment, is what boot() would report for it.
  EXPECT_EQ(m.hart().pc(), kDramBase);
  const LoadedImage image = load_image_at(file("vmlinux2", elf_image(0, 0xffffffff80000000, code, 4096, 0x40)),
                                          m.memory(), kKernelBase);
  EXPECT_EQ(image.entry, kKernelBase + 0x40);
  EXPECT_EQ(image.lowest, kKernelBase);
  EXPECT_EQ(image.highest, kKernelBase + code.size() + 4096) << "bss counts";
}

TEST_F(BootTest, KernelElfInsideRamLoadsAtItsPhysicalAddresses) {
  const auto code = pattern(4096, 5);
  Machine m(config(16), world);
  m.boot({file("fw.bin", pattern(100, 1)), file("k.elf", elf_image(0x80400000, 0x80400000, code, 0, 0)), ""});
  std::vector<uint8_t> got(code.size());
  ASSERT_TRUE(m.memory().read(0x80400000, got));
  EXPECT_EQ(got, code);
  ASSERT_TRUE(m.memory().read(kKernelBase, got));
  EXPECT_NE(got, code) << "not copied to 0x80200000";
}

TEST_F(BootTest, FirmwareAloneBoots) {
  Machine m(config(16), world);
  m.boot({file("fw.bin", pattern(100, 1)), "", ""});
  EXPECT_EQ(m.hart().pc(), kDramBase);
}

TEST_F(BootTest, KernelLargerThanRamIsRefused) {
  const std::string err = boot_error(config(16), {file("fw.bin", pattern(100, 1)), file("Image", pattern(15 * kMib, 2)), ""});
  EXPECT_NE(err.find("Image: raw image of"), std::string::npos) << err;
  EXPECT_NE(err.find("does not fit in RAM"), std::string::npos) << err;
}

TEST_F(BootTest, LinuxImageHeaderSizeCountsNotJustTheFile) {
  // A 64-byte file whose header says the kernel needs 15 MiB once running (bss included).
  const std::string err = boot_error(config(16), {file("fw.bin", pattern(100, 1)), file("Image", linux_image(15 * kMib)), ""});
  EXPECT_NE(err.find("15728640 bytes"), std::string::npos) << err;
  // The same header fits with room to spare in 64 MiB, and the placed initrd stays clear of it.
  Machine m(config(64), world);
  m.boot({file("fw.bin", pattern(100, 1)), file("Image", linux_image(15 * kMib)), file("i", pattern(4096, 3))});
}

TEST_F(BootTest, InitrdThatDoesNotFitIsRefused) {
  const std::string err =
      boot_error(config(16), {file("fw.bin", pattern(100, 1)), file("Image", pattern(100, 2)), file("big.cpio", pattern(17 * kMib, 3))});
  EXPECT_NE(err.find("--initrd"), std::string::npos) << err;
  EXPECT_NE(err.find("do not fit in RAM below the device tree"), std::string::npos) << err;
}

TEST_F(BootTest, InitrdOverlappingTheKernelIsRefused) {
  // 16 MiB: kernel [0x80200000, 0x80a00000), a 7.5 MiB initrd would have to start below that.
  const std::string err = boot_error(config(16), {file("fw.bin", pattern(100, 1)), file("Image", pattern(8 * kMib, 2)),
                                                  file("initrd.cpio", pattern(7 * kMib + kMib / 2, 3))});
  EXPECT_NE(err.find("--initrd"), std::string::npos) << err;
  EXPECT_NE(err.find("overlaps --kernel"), std::string::npos) << err;
  EXPECT_NE(err.find("use a larger --mem"), std::string::npos) << err;
}

TEST_F(BootTest, FirmwareOverlappingTheKernelIsRefused) {
  const std::string err = boot_error(config(16), {file("fw.bin", pattern(3 * kMib, 1)), file("Image", pattern(100, 2)), ""});
  EXPECT_NE(err.find("--kernel"), std::string::npos) << err;
  EXPECT_NE(err.find("overlaps --bios"), std::string::npos) << err;
  EXPECT_EQ(err.find("--mem"), std::string::npos) << "more RAM would not help: " << err;
}

TEST_F(BootTest, MissingEmptyOrUnreadableFilesAreRefused) {
  const std::string fw = file("fw.bin", pattern(100, 1));
  EXPECT_NE(boot_error(config(16), {(dir / "nope.bin").string(), "", ""}).find("nope.bin: cannot open"), std::string::npos);
  EXPECT_NE(boot_error(config(16), {fw, (dir / "nokernel").string(), ""}).find("nokernel: cannot open"), std::string::npos);
  EXPECT_NE(boot_error(config(16), {fw, file("k", pattern(10, 2)), file("empty", {})}).find("empty: empty file"),
            std::string::npos);
  EXPECT_NE(boot_error(config(16), {fw, file("k", pattern(10, 2)), dir.string()}).find("not a regular file"),
            std::string::npos);
  EXPECT_NE(boot_error(config(16), {fw, "", file("i", pattern(10, 2))}).find("--initrd needs --kernel"),
            std::string::npos);
}

TEST_F(BootTest, HalfWordFinisherWritesEndTheRun) {
  // OpenSBI's sifive_test driver (SBI SRST) stores the command with a 16-bit write.
  for (const auto& [value, exit] : {std::pair{0x5555, Exit::GuestPass}, std::pair{0x7777, Exit::Reset}}) {
    RvAsm a;
    a.li(t0, 0x100000);
    a.li(t1, value);
    a.sh(t1, t0, 0);
    a.j(0);
    const auto bytes = a.bytes();
    Machine m(config(16), world);
    m.boot({file("fw.bin", bytes), "", ""});
    EXPECT_EQ(m.run_until(1000).exit, exit);
  }
  // A byte write is not a command.
  RvAsm a;
  a.li(t0, 0x100000);
  a.li(t1, 0x55);
  a.sb(t1, t0, 0);
  a.j(0);
  Machine m(config(16), world);
  m.boot({file("fw.bin", a.bytes()), "", ""});
  EXPECT_EQ(m.run_until(1000).exit, Exit::Running);
}

}  // namespace
}  // namespace tandem::vmm
