#pragma once
// virtio-rng (entropy source, device id 4). Every byte comes from the World's entropy()
// call, stamped with the icount of the notify that asked for it, so the Recorder logs it
// and the Replayer hands back the same bytes: the guest's randomness replays exactly.
#include <cstdint>
#include <functional>
#include <span>

#include "vmm/devices/virtio_mmio.h"

namespace tandem::vmm {

class VirtioRng final : public VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 4;
  // Bytes handed out per request at most: a guest asking for a huge buffer gets a short
  // (valid) answer instead of making the host generate megabytes.
  static constexpr uint32_t kMaxBytesPerRequest = 4096;

  explicit VirtioRng(std::function<void(std::span<uint8_t>)> entropy) : entropy_(std::move(entropy)) {}

  std::string_view name() const override { return "virtio-rng"; }
  uint32_t device_id() const override { return kDeviceId; }
  uint64_t device_features() const override { return 0; }
  unsigned queue_count() const override { return 1; }
  uint64_t read_config(uint64_t, unsigned) const override { return 0; }
  bool process_queue(unsigned index, VirtQueue& queue, GuestMemory& mem) override;
  void save(StateWriter& out) const override { out.tag("RNG "); }
  void restore(StateReader& in) override { in.expect_tag("RNG "); }

 private:
  std::function<void(std::span<uint8_t>)> entropy_;
};

}  // namespace tandem::vmm
