#pragma once
// virtio-mmio transport, version 2 (virtio 1.x "modern" register layout), written once
// over the VirtioDevice trait. An empty slot (device == nullptr) answers the magic and
// version and reports device id 0, as QEMU does. Guest mistakes (bad queue setup, bad
// descriptor chains) set DEVICE_NEEDS_RESET and raise a configuration interrupt; they
// never assert.
#include <array>
#include <cstdint>
#include <functional>
#include <string_view>
#include <type_traits>

#include "vmm/device.h"
#include "vmm/devices/virtio_queue.h"
#include "vmm/guest_memory.h"

namespace tandem::vmm {

inline constexpr uint64_t kVirtioFVersion1 = uint64_t{1} << 32;

class VirtioMmio;

// What a concrete virtio device (blk, later net/rng) implements.
class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;
  virtual std::string_view name() const = 0;
  virtual uint32_t device_id() const = 0;
  // Feature bits offered (the transport adds VIRTIO_F_VERSION_1).
  virtual uint64_t device_features() const = 0;
  virtual unsigned queue_count() const = 0;
  virtual uint16_t queue_max_size() const { return 256; }
  // Device-specific configuration space (offset relative to 0x100).
  virtual uint64_t read_config(uint64_t offset, unsigned size) const = 0;
  virtual void write_config(uint64_t /*offset*/, unsigned /*size*/, uint64_t /*value*/) {}
  // Handles the available buffers of queue `index`; returns true if any buffer was used.
  // Throws VirtioError on a driver error.
  virtual bool process_queue(unsigned index, VirtQueue& queue, GuestMemory& mem) = 0;
  // Driver reset (status written to 0).
  virtual void reset() {}
  // The transport this device sits behind (called once, by the transport's constructor), for
  // devices that start work themselves (virtio-net receive, link changes).
  virtual void attach(VirtioMmio& /*transport*/) {}
  virtual void save(StateWriter& out) const = 0;
  virtual void restore(StateReader& in) = 0;
};

class VirtioMmio final : public Device {
 public:
  static constexpr unsigned kMaxQueues = 4;
  static constexpr uint32_t kMagic = 0x74726976;  // "virt"
  static constexpr uint32_t kVendorId = 0x554d4551;  // "QEMU", as QEMU reports
  // Register offsets.
  static constexpr uint64_t kMagicValue = 0x000, kVersion = 0x004, kDeviceId = 0x008,
                            kVendor = 0x00c, kDeviceFeatures = 0x010, kDeviceFeaturesSel = 0x014,
                            kDriverFeatures = 0x020, kDriverFeaturesSel = 0x024, kQueueSel = 0x030,
                            kQueueNumMax = 0x034, kQueueNum = 0x038, kQueueReady = 0x044,
                            kQueueNotify = 0x050, kInterruptStatus = 0x060, kInterruptAck = 0x064,
                            kStatus = 0x070, kQueueDescLow = 0x080, kQueueDescHigh = 0x084,
                            kQueueDriverLow = 0x090, kQueueDriverHigh = 0x094,
                            kQueueDeviceLow = 0x0a0, kQueueDeviceHigh = 0x0a4,
                            kConfigGeneration = 0x0fc, kConfig = 0x100;
  // Device status bits.
  static constexpr uint32_t kStatusAcknowledge = 1, kStatusDriver = 2, kStatusDriverOk = 4,
                            kStatusFeaturesOk = 8, kStatusNeedsReset = 0x40, kStatusFailed = 0x80;
  static constexpr uint32_t kInterruptUsedBuffer = 1, kInterruptConfigChange = 2;

  // `device` may be nullptr (empty slot); it is not owned.
  VirtioMmio(VirtioDevice* device, GuestMemory& mem, IrqLine irq)
      : device_(device), mem_(mem), irq_(irq) {
    if (device_) device_->attach(*this);
  }

  std::string_view name() const override { return device_ ? device_->name() : "virtio-mmio (empty)"; }
  bool read(uint64_t offset, unsigned size, uint64_t& value) override;
  bool write(uint64_t offset, unsigned size, uint64_t value) override;
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

  uint32_t status() const { return state_.status; }
  uint32_t interrupt_status() const { return state_.interrupt_status; }
  void refresh_irq() { irq_.set(state_.interrupt_status != 0); }

  // Device-initiated work on queue `index` (a received frame). Runs `work` only while the
  // queue is live (DRIVER_OK, no NEEDS_RESET, queue ready) and returns false otherwise;
  // when `work` returns true (a buffer was used) the used-buffer interrupt is raised. A
  // VirtioError from `work` is a driver error (NEEDS_RESET), and false is returned.
  bool device_work(unsigned index, const std::function<bool(VirtQueue&, GuestMemory&)>& work);
  // True if queue `index` is live and the driver has made a buffer available. No side
  // effects (a corrupt ring answers false here and fails the device only when it is used),
  // so a World may ask as often as it likes without changing the machine's state.
  bool queue_has_available(unsigned index) const;
  // The device changed its configuration space: a new generation, and a configuration-change
  // interrupt once the driver is live.
  void config_changed();

 private:
  struct State {
    uint64_t driver_features = 0;
    uint32_t device_features_sel = 0;
    uint32_t driver_features_sel = 0;
    uint32_t queue_sel = 0;
    uint32_t status = 0;
    uint32_t interrupt_status = 0;
    uint32_t config_generation = 0;
  };
  static_assert(std::has_unique_object_representations_v<State>);

  uint64_t offered_features() const;
  VirtQueue* selected_queue();
  bool queue_live(unsigned index) const;
  void reset();
  void notify(uint32_t queue_index);
  // A driver error: the device stops until the driver resets it.
  void fail(std::string_view why);

  VirtioDevice* device_;
  GuestMemory& mem_;
  IrqLine irq_;
  State state_;
  std::array<VirtQueue, kMaxQueues> queues_;
};

}  // namespace tandem::vmm
