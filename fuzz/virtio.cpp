// Virtio queues driven from guest memory (vmm/devices/virtio_mmio, virtio_queue, virtio_blk,
// virtio_rng): the fuzzer writes the descriptor table, the rings and the buffers into guest
// RAM, a driver sets the device up through its MMIO registers and notifies the queue; then
// the fuzzer's own register writes, RAM writes, notifies, resets and (virtio-net) frames
// from the host and link changes follow. Input layout:
// fuzz/virtio_harness.h. A guest can make the device fail (DEVICE_NEEDS_RESET), never crash.
#include <memory>
#include <span>

#include "fuzz/fuzz_support.h"
#include "fuzz/virtio_harness.h"
#include "vmm/devices/disk_image.h"
#include "vmm/devices/virtio_blk.h"
#include "vmm/devices/virtio_mmio.h"
#include "vmm/devices/virtio_net.h"
#include "vmm/devices/virtio_rng.h"
#include "vmm/guest_memory.h"

namespace {

using namespace tandem::fuzz::virtio;
using tandem::vmm::VirtioMmio;

struct NoIrq final : tandem::vmm::IrqSink {
  void set_irq(unsigned, bool) override {}
};

void write(VirtioMmio& mmio, uint64_t offset, uint32_t value) { (void)mmio.write(offset, 4, value); }
uint32_t read(VirtioMmio& mmio, uint64_t offset) {
  uint64_t v = 0;
  (void)mmio.read(offset, 4, v);
  return static_cast<uint32_t>(v);
}

void setup(VirtioMmio& mmio, unsigned queues, uint32_t queue_size) {
  write(mmio, VirtioMmio::kStatus, 0);
  write(mmio, VirtioMmio::kStatus, VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver);
  write(mmio, VirtioMmio::kDeviceFeaturesSel, 0);
  const uint32_t features = read(mmio, VirtioMmio::kDeviceFeatures);
  write(mmio, VirtioMmio::kDriverFeaturesSel, 0);
  write(mmio, VirtioMmio::kDriverFeatures, features);
  write(mmio, VirtioMmio::kDriverFeaturesSel, 1);
  write(mmio, VirtioMmio::kDriverFeatures, 1);  // VERSION_1
  write(mmio, VirtioMmio::kStatus,
        VirtioMmio::kStatusAcknowledge | VirtioMmio::kStatusDriver | VirtioMmio::kStatusFeaturesOk);
  for (unsigned q = 0; q < queues; ++q) {
    write(mmio, VirtioMmio::kQueueSel, q);
    write(mmio, VirtioMmio::kQueueNum, queue_size);
    write(mmio, VirtioMmio::kQueueDescLow, static_cast<uint32_t>(desc(q)));
    write(mmio, VirtioMmio::kQueueDescHigh, static_cast<uint32_t>(desc(q) >> 32));
    write(mmio, VirtioMmio::kQueueDriverLow, static_cast<uint32_t>(avail(q)));
    write(mmio, VirtioMmio::kQueueDriverHigh, static_cast<uint32_t>(avail(q) >> 32));
    write(mmio, VirtioMmio::kQueueDeviceLow, static_cast<uint32_t>(used(q)));
    write(mmio, VirtioMmio::kQueueDeviceHigh, static_cast<uint32_t>(used(q) >> 32));
    write(mmio, VirtioMmio::kQueueReady, 1);
  }
  write(mmio, VirtioMmio::kStatus, read(mmio, VirtioMmio::kStatus) | VirtioMmio::kStatusDriverOk);
}

struct Devices {
  tandem::fuzz::MemFile disk_file{"fuzz-virtio-disk"};
  std::unique_ptr<tandem::vmm::DiskImage> disk;
  std::unique_ptr<tandem::vmm::VirtioBlk> blk;
  std::unique_ptr<tandem::vmm::VirtioRng> rng;
  std::unique_ptr<tandem::vmm::VirtioNet> net;
  Devices() {
    disk_file.resize(kDiskBytes);
    disk = std::make_unique<tandem::vmm::DiskImage>(disk_file.path());
    blk = std::make_unique<tandem::vmm::VirtioBlk>(*disk);
    rng = std::make_unique<tandem::vmm::VirtioRng>([](std::span<uint8_t> out) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(i);
    });
    net = std::make_unique<tandem::vmm::VirtioNet>(tandem::vmm::NicConfig{}, [](std::span<const uint8_t> frame) {
      // What the host receives must be a whole Ethernet frame within the MTU.
      if (frame.size() < tandem::vmm::VirtioNet::kEthHeaderBytes) __builtin_trap();
    });
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Devices devices;
  static NoIrq irq;
  tandem::fuzz::Cursor in(data, size);
  tandem::vmm::VirtioDevice* device = nullptr;
  const unsigned kind = in.take<uint8_t>() % 3;
  switch (kind) {
    case 0: device = devices.blk.get(); break;
    case 1: device = devices.rng.get(); break;
    case 2: device = devices.net.get(); break;
  }
  const uint32_t queue_size = uint32_t{1} << (in.take<uint8_t>() & 15);
  tandem::vmm::GuestMemory mem(kRam, kRamBytes);
  const std::string_view image = in.bytes(in.take<uint16_t>());
  (void)mem.write(kRam, {reinterpret_cast<const uint8_t*>(image.data()), image.size()});
  VirtioMmio mmio(device, mem, tandem::vmm::IrqLine{&irq, 1});
  const unsigned queues = device->queue_count();
  if (kind == 2) devices.net->set_link(true);
  setup(mmio, queues, queue_size);
  write(mmio, VirtioMmio::kQueueNotify, 0);
  while (!in.empty()) {
    switch (in.take<uint8_t>()) {
      case kNotify:
        write(mmio, VirtioMmio::kQueueNotify, in.take<uint8_t>() % queues);
        break;
      case kMmioWrite: {
        const auto offset = in.take<uint16_t>() & 0x1fc;
        write(mmio, offset, in.take<uint32_t>());
        break;
      }
      case kRamWrite: {
        const auto offset = in.take<uint16_t>();
        const std::string_view bytes = in.bytes(in.take<uint8_t>());
        (void)mem.write(kRam + offset, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
        break;
      }
      case kMmioRead:
        (void)read(mmio, in.take<uint16_t>() & 0x1fc);
        break;
      case kReset:
        setup(mmio, queues, queue_size);
        break;
      case kNetReceive: {
        const std::string_view frame = in.bytes(in.take<uint16_t>());
        if (kind == 2) (void)devices.net->receive({reinterpret_cast<const uint8_t*>(frame.data()), frame.size()});
        break;
      }
      case kNetLink:
        if (kind == 2) devices.net->set_link(in.take<uint8_t>() & 1);
        break;
      default:
        break;
    }
  }
  return 0;
}
