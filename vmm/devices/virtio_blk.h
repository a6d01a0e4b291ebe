#pragma once
// virtio-blk over a DiskImage. Requests complete synchronously inside the notify write,
// so completion order and timing are a pure function of the guest's actions
// (deterministic). Supported: IN, OUT, FLUSH, GET_ID; anything else → UNSUPP.
// A request that does not fit the disk or the sector grid → IOERR.
//
// Snapshot: the disk's size and XXH3 content hash (not its contents). Restoring checks
// that the attached image is the same; the image itself travels separately.
#include <cstdint>

#include "vmm/devices/disk_image.h"
#include "vmm/devices/virtio_mmio.h"

namespace tandem::vmm {

class VirtioBlk final : public VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 2;
  static constexpr uint64_t kFeatureFlush = uint64_t{1} << 9;
  static constexpr uint32_t kTypeIn = 0, kTypeOut = 1, kTypeFlush = 4, kTypeGetId = 8;
  static constexpr uint8_t kStatusOk = 0, kStatusIoErr = 1, kStatusUnsupported = 2;
  static constexpr unsigned kIdBytes = 20;

  explicit VirtioBlk(DiskImage& disk) : disk_(disk) {}

  std::string_view name() const override { return "virtio-blk"; }
  uint32_t device_id() const override { return kDeviceId; }
  uint64_t device_features() const override { return kFeatureFlush; }
  unsigned queue_count() const override { return 1; }
  uint64_t read_config(uint64_t offset, unsigned size) const override;
  bool process_queue(unsigned index, VirtQueue& queue, GuestMemory& mem) override;
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

 private:
  // Executes one request; returns the number of bytes written into writable buffers.
  uint32_t handle(const DescriptorChain& chain, GuestMemory& mem);
  uint8_t do_in(uint64_t sector, const DescriptorChain& chain, uint64_t data_bytes, GuestMemory& mem);
  uint8_t do_out(uint64_t sector, const DescriptorChain& chain, GuestMemory& mem);

  DiskImage& disk_;
};

}  // namespace tandem::vmm
