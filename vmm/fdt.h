#pragma once
// The flattened device tree handed to the guest in a1: built with libfdt from kBoardMap,
// close to what QEMU's virt board generates so OpenSBI and Linux find the same nodes.
#include <cstdint>
#include <string>
#include <vector>

namespace tandem::vmm {

struct FdtConfig {
  uint64_t mem_bytes = 0;
  std::string bootargs;      // /chosen/bootargs; left out when empty (as QEMU without -append)
  bool has_disk = false;  // informational; every virtio slot gets a node, as on QEMU
  uint64_t initrd_start = 0;  // /chosen/linux,initrd-start/end when initrd_end > initrd_start
  uint64_t initrd_end = 0;
};

// Returns the DTB blob (packed). Throws std::runtime_error if libfdt fails.
std::vector<uint8_t> build_fdt(const FdtConfig& config);

// Where the DTB goes: the highest 64 KiB-aligned address below the end of RAM that holds it.
uint64_t fdt_load_address(uint64_t ram_base, uint64_t ram_bytes, uint64_t fdt_bytes);

// Phandles used in the tree.
inline constexpr uint32_t kPhandleCpuIntc = 1;
inline constexpr uint32_t kPhandlePlic = 2;
inline constexpr uint32_t kPhandleTest = 3;
inline constexpr uint32_t kPhandleCpu = 4;

}  // namespace tandem::vmm
