#include "vmm/fdt.h"

extern "C" {
#include <libfdt.h>
}

#include <cstdio>
#include <stdexcept>
#include <string_view>

#include "vmm/board.h"
#include "vmm/clock.h"

namespace tandem::vmm {

namespace {

// Thin RAII-free wrapper over the sequential-write API: every call is checked.
class FdtWriter {
 public:
  explicit FdtWriter(size_t capacity) : blob_(capacity) {
    check(fdt_create(blob_.data(), static_cast<int>(blob_.size())), "create");
    check(fdt_finish_reservemap(blob_.data()), "reservemap");
  }
  void begin(const std::string& name) { check(fdt_begin_node(blob_.data(), name.c_str()), name.c_str()); }
  void end() { check(fdt_end_node(blob_.data()), "end node"); }
  void prop_u32(const char* name, uint32_t v) { check(fdt_property_u32(blob_.data(), name, v), name); }
  void prop_str(const char* name, std::string_view v) {
    const std::string s(v);
    check(fdt_property_string(blob_.data(), name, s.c_str()), name);
  }
  void prop_u64(const char* name, uint64_t v) { check(fdt_property_u64(blob_.data(), name, v), name); }
  void prop_empty(const char* name) { check(fdt_property(blob_.data(), name, nullptr, 0), name); }
  // A list of strings ("a\0b\0").
  void prop_strings(const char* name, std::initializer_list<std::string_view> list) {
    std::string joined;
    for (auto s : list) {
      joined.append(s);
      joined.push_back('\0');
    }
    check(fdt_property(blob_.data(), name, joined.data(), static_cast<int>(joined.size())), name);
  }
  void prop_cells(const char* name, std::initializer_list<uint32_t> cells) {
    std::vector<fdt32_t> be;
    for (uint32_t c : cells) be.push_back(cpu_to_fdt32(c));
    check(fdt_property(blob_.data(), name, be.data(), static_cast<int>(be.size() * sizeof(fdt32_t))), name);
  }
  // reg = <addr size> with #address-cells = #size-cells = 2.
  void prop_reg64(uint64_t base, uint64_t size) {
    prop_cells("reg", {static_cast<uint32_t>(base >> 32), static_cast<uint32_t>(base),
                       static_cast<uint32_t>(size >> 32), static_cast<uint32_t>(size)});
  }
  std::vector<uint8_t> finish() {
    check(fdt_finish(blob_.data()), "finish");
    check(fdt_pack(blob_.data()), "pack");
    blob_.resize(fdt_totalsize(blob_.data()));
    return std::move(blob_);
  }

 private:
  static void check(int err, const char* what) {
    if (err < 0) throw std::runtime_error(std::string("device tree: ") + what + ": " + fdt_strerror(err));
  }
  std::vector<uint8_t> blob_;
};

std::string unit(std::string_view name, uint64_t addr) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "@%llx", static_cast<unsigned long long>(addr));
  return std::string(name) + buf;
}

}  // namespace

std::vector<uint8_t> build_fdt(const FdtConfig& config) {
  FdtWriter w(64 * 1024);
  w.begin("");
  w.prop_u32("#address-cells", 2);
  w.prop_u32("#size-cells", 2);
  w.prop_str("compatible", "riscv-virtio");
  w.prop_str("model", "riscv-virtio,qemu");

  const std::string serial_path = "/soc/" + unit("serial", board_region(DeviceKind::Uart).base);
  w.begin("chosen");
  w.prop_str("stdout-path", serial_path);
  if (!config.bootargs.empty()) w.prop_str("bootargs", config.bootargs);
  if (config.initrd_end > config.initrd_start) {
    w.prop_u64("linux,initrd-start", config.initrd_start);
    w.prop_u64("linux,initrd-end", config.initrd_end);
  }
  w.end();

  w.begin("aliases");
  w.prop_str("serial0", serial_path);
  w.end();

  w.begin(unit("memory", kDramBase));
  w.prop_str("device_type", "memory");
  w.prop_reg64(kDramBase, config.mem_bytes);
  w.end();

  w.begin("cpus");
  w.prop_u32("#address-cells", 1);
  w.prop_u32("#size-cells", 0);
  w.prop_u32("timebase-frequency", static_cast<uint32_t>(kTimebaseHz));
  w.begin("cpu@0");
  w.prop_str("device_type", "cpu");
  w.prop_u32("reg", 0);
  w.prop_str("status", "okay");
  w.prop_str("compatible", "riscv");
  w.prop_str("riscv,isa", "rv64imafdc");  // Linux 6.1 reads this string
  w.prop_str("mmu-type", "riscv,sv39");
  w.prop_u32("phandle", kPhandleCpu);
  w.begin("interrupt-controller");
  w.prop_u32("#interrupt-cells", 1);
  w.prop_empty("interrupt-controller");
  w.prop_str("compatible", "riscv,cpu-intc");
  w.prop_u32("phandle", kPhandleCpuIntc);
  w.end();
  w.end();  // cpu@0
  // Topology, as QEMU describes it: one cluster, one core.
  w.begin("cpu-map");
  w.begin("cluster0");
  w.begin("core0");
  w.prop_u32("cpu", kPhandleCpu);
  w.end();
  w.end();
  w.end();
  w.end();  // cpus

  // QEMU puts the syscon poweroff/reboot nodes at the root, pointing at the finisher.
  w.begin("poweroff");
  w.prop_str("compatible", "syscon-poweroff");
  w.prop_u32("regmap", kPhandleTest);
  w.prop_u32("offset", 0);
  w.prop_u32("value", 0x5555);
  w.end();
  w.begin("reboot");
  w.prop_str("compatible", "syscon-reboot");
  w.prop_u32("regmap", kPhandleTest);
  w.prop_u32("offset", 0);
  w.prop_u32("value", 0x7777);
  w.end();

  w.begin("soc");
  w.prop_u32("#address-cells", 2);
  w.prop_u32("#size-cells", 2);
  w.prop_str("compatible", "simple-bus");
  w.prop_empty("ranges");
  for (const BoardRegion& r : kBoardMap) {
    w.begin(unit(r.name, r.base));
    switch (r.kind) {
      case DeviceKind::TestFinisher:
        w.prop_strings("compatible", {"sifive,test1", "sifive,test0", "syscon"});
        w.prop_reg64(r.base, r.size);
        w.prop_u32("phandle", kPhandleTest);
        break;
      case DeviceKind::Clint:
        w.prop_strings("compatible", {"sifive,clint0", "riscv,clint0"});
        w.prop_reg64(r.base, r.size);
        // Software (3) and timer (7) interrupts of hart 0's M-mode.
        w.prop_cells("interrupts-extended", {kPhandleCpuIntc, 3, kPhandleCpuIntc, 7});
        break;
      case DeviceKind::Plic:
        w.prop_strings("compatible", {"sifive,plic-1.0.0", "riscv,plic0"});
        w.prop_reg64(r.base, r.size);
        w.prop_u32("#address-cells", 0);
        w.prop_u32("#interrupt-cells", 1);
        w.prop_empty("interrupt-controller");
        w.prop_u32("riscv,ndev", kPlicSources - 1);
        // Context 0 = M-mode external (11), context 1 = S-mode external (9).
        w.prop_cells("interrupts-extended", {kPhandleCpuIntc, 11, kPhandleCpuIntc, 9});
        w.prop_u32("phandle", kPhandlePlic);
        break;
      case DeviceKind::Uart:
        w.prop_str("compatible", "ns16550a");
        w.prop_reg64(r.base, r.size);
        w.prop_u32("clock-frequency", 3686400);
        w.prop_u32("interrupts", r.irq);
        w.prop_u32("interrupt-parent", kPhandlePlic);
        break;
      case DeviceKind::VirtioMmio:
        w.prop_str("compatible", "virtio,mmio");
        w.prop_reg64(r.base, r.size);
        w.prop_u32("interrupts", r.irq);
        w.prop_u32("interrupt-parent", kPhandlePlic);
        break;
    }
    w.end();
  }
  w.end();  // soc

  w.end();  // root
  return w.finish();
}

uint64_t fdt_load_address(uint64_t ram_base, uint64_t ram_bytes, uint64_t fdt_bytes) {
  constexpr uint64_t kAlign = 64 * 1024;
  if (fdt_bytes > ram_bytes) return ram_base;  // caller checks fit
  const uint64_t addr = (ram_base + ram_bytes - fdt_bytes) & ~(kAlign - 1);
  return addr < ram_base ? ram_base : addr;
}

}  // namespace tandem::vmm
