// The generated device tree parses back with libfdt and carries the nodes and properties
// OpenSBI/Linux look for, at the addresses of the board table.
extern "C" {
#include <libfdt.h>
}
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "vmm/board.h"
#include "vmm/fdt.h"

namespace tandem::vmm {
namespace {

class FdtTest : public ::testing::Test {
 protected:
  FdtTest() : blob(build_fdt({uint64_t{256} << 20, "console=ttyS0", false})) {}
  const void* fdt() const { return blob.data(); }
  int node(const char* path) {
    const int off = fdt_path_offset(fdt(), path);
    EXPECT_GE(off, 0) << path << ": " << fdt_strerror(off);
    return off;
  }
  std::string str(const char* path, const char* prop) {
    int len = 0;
    const char* v = static_cast<const char*>(fdt_getprop(fdt(), node(path), prop, &len));
    if (!v || len <= 0) return "<missing>";
    return std::string(v, static_cast<size_t>(len - 1));  // without the final NUL
  }
  std::vector<uint32_t> cells(const char* path, const char* prop) {
    int len = 0;
    const auto* v = static_cast<const fdt32_t*>(fdt_getprop(fdt(), node(path), prop, &len));
    std::vector<uint32_t> out;
    for (int i = 0; v && i < len / 4; ++i) out.push_back(fdt32_to_cpu(v[i]));
    return out;
  }
  bool has(const char* path, const char* prop) {
    return fdt_getprop(fdt(), node(path), prop, nullptr) != nullptr;
  }

  std::vector<uint8_t> blob;
};

TEST_F(FdtTest, HeaderIsValidAndSmall) {
  ASSERT_EQ(fdt_check_header(fdt()), 0);
  EXPECT_EQ(fdt_totalsize(fdt()), blob.size());
  EXPECT_LT(blob.size(), 64u * 1024);
}

TEST_F(FdtTest, MemoryNodeMatchesConfig) {
  EXPECT_EQ(str("/memory@80000000", "device_type"), "memory");
  EXPECT_EQ(cells("/memory@80000000", "reg"), (std::vector<uint32_t>{0, 0x80000000, 0, 0x10000000}));
}

TEST_F(FdtTest, CpuNode) {
  EXPECT_EQ(cells("/cpus", "timebase-frequency"), (std::vector<uint32_t>{10000000}));
  EXPECT_EQ(str("/cpus/cpu@0", "device_type"), "cpu");
  EXPECT_EQ(str("/cpus/cpu@0", "status"), "okay");
  EXPECT_EQ(str("/cpus/cpu@0", "compatible"), "riscv");
  EXPECT_EQ(str("/cpus/cpu@0", "riscv,isa"), "rv64imafdc");
  EXPECT_EQ(str("/cpus/cpu@0", "mmu-type"), "riscv,sv39");
  EXPECT_EQ(cells("/cpus/cpu@0", "reg"), (std::vector<uint32_t>{0}));
  const char* intc = "/cpus/cpu@0/interrupt-controller";
  EXPECT_EQ(str(intc, "compatible"), "riscv,cpu-intc");
  EXPECT_EQ(cells(intc, "#interrupt-cells"), (std::vector<uint32_t>{1}));
  EXPECT_TRUE(has(intc, "interrupt-controller"));
  EXPECT_EQ(fdt_get_phandle(fdt(), node(intc)), kPhandleCpuIntc);
  EXPECT_EQ(cells("/cpus/cpu-map/cluster0/core0", "cpu"), (std::vector<uint32_t>{kPhandleCpu}));
  EXPECT_EQ(fdt_get_phandle(fdt(), node("/cpus/cpu@0")), kPhandleCpu);
}

TEST_F(FdtTest, ClintAndPlicWiring) {
  EXPECT_EQ(str("/soc/clint@2000000", "compatible"), std::string("sifive,clint0\0riscv,clint0", 26));
  EXPECT_EQ(cells("/soc/clint@2000000", "interrupts-extended"),
            (std::vector<uint32_t>{kPhandleCpuIntc, 3, kPhandleCpuIntc, 7}));
  const char* plic = "/soc/plic@c000000";
  EXPECT_EQ(str(plic, "compatible"), std::string("sifive,plic-1.0.0\0riscv,plic0", 29));
  EXPECT_EQ(cells(plic, "reg"), (std::vector<uint32_t>{0, 0x0c000000, 0, 0x600000}));
  EXPECT_EQ(cells(plic, "interrupts-extended"), (std::vector<uint32_t>{kPhandleCpuIntc, 11, kPhandleCpuIntc, 9}));
  EXPECT_EQ(cells(plic, "#interrupt-cells"), (std::vector<uint32_t>{1}));
  EXPECT_TRUE(has(plic, "interrupt-controller"));
  EXPECT_EQ(cells(plic, "riscv,ndev"), (std::vector<uint32_t>{96}));  // as QEMU virt
  EXPECT_EQ(fdt_get_phandle(fdt(), node(plic)), kPhandlePlic);
}

TEST_F(FdtTest, SerialVirtioAndTestNodesFollowTheBoardTable) {
  const char* uart = "/soc/serial@10000000";
  EXPECT_EQ(str(uart, "compatible"), "ns16550a");
  EXPECT_EQ(cells(uart, "clock-frequency"), (std::vector<uint32_t>{3686400}));
  EXPECT_EQ(cells(uart, "interrupts"), (std::vector<uint32_t>{10}));
  EXPECT_EQ(cells(uart, "interrupt-parent"), (std::vector<uint32_t>{kPhandlePlic}));
  for (unsigned i = 0; i < kVirtioSlots; ++i) {
    const std::string path = "/soc/virtio_mmio@" + std::to_string(10001 + i) + "000";
    EXPECT_EQ(str(path.c_str(), "compatible"), "virtio,mmio") << path;
    EXPECT_EQ(cells(path.c_str(), "interrupts"), (std::vector<uint32_t>{1 + i})) << path;
  }
  EXPECT_EQ(str("/soc/test@100000", "compatible"), std::string("sifive,test1\0sifive,test0\0syscon", 32));
  EXPECT_EQ(cells("/poweroff", "value"), (std::vector<uint32_t>{0x5555}));
  EXPECT_EQ(cells("/reboot", "value"), (std::vector<uint32_t>{0x7777}));
  EXPECT_EQ(cells("/poweroff", "regmap"), (std::vector<uint32_t>{kPhandleTest}));
}

TEST_F(FdtTest, ChosenNode) {
  EXPECT_EQ(str("/chosen", "stdout-path"), "/soc/serial@10000000");
  EXPECT_EQ(str("/chosen", "bootargs"), "console=ttyS0");
  EXPECT_EQ(str("/aliases", "serial0"), "/soc/serial@10000000");
  EXPECT_FALSE(has("/chosen", "linux,initrd-start")) << "no initrd configured";
}

TEST(FdtChosen, InitrdRangeIsTwo64BitCells) {
  FdtConfig config{uint64_t{128} << 20, "", false, 0x87000000, 0x87654321};
  const std::vector<uint8_t> blob = build_fdt(config);
  const int chosen = fdt_path_offset(blob.data(), "/chosen");
  // Properties are only 4-byte aligned: read the cells with memcpy.
  auto u64 = [&](const char* name) -> uint64_t {
    int len = 0;
    const void* v = fdt_getprop(blob.data(), chosen, name, &len);
    if (!v || len != 8) return 0;
    fdt64_t cell;
    std::memcpy(&cell, v, sizeof cell);
    return fdt64_to_cpu(cell);
  };
  EXPECT_EQ(u64("linux,initrd-start"), 0x87000000u);
  EXPECT_EQ(u64("linux,initrd-end"), 0x87654321u);
  EXPECT_EQ(fdt_getprop(blob.data(), chosen, "bootargs", nullptr), nullptr) << "empty bootargs are left out";
}

TEST(FdtPlacement, Last64KiBAlignedSlotBelowEndOfRam) {
  EXPECT_EQ(fdt_load_address(0x80000000, 128 << 20, 4000), 0x80000000u + (128 << 20) - 0x10000);
  EXPECT_EQ(fdt_load_address(0x80000000, 128 << 20, 0x10001), 0x80000000u + (128 << 20) - 0x20000);
}

}  // namespace
}  // namespace tandem::vmm
