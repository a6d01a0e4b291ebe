#pragma once
// virtio-net (device id 1): one receive and one transmit queue, no offloads.
// Features: VIRTIO_NET_F_MTU, VIRTIO_NET_F_MAC (from NicConfig), VIRTIO_NET_F_STATUS (link up/
// down, with a configuration-change interrupt), VIRTIO_F_VERSION_1 (from the transport).
//
// Transmit runs inside the notify write: each well-formed frame goes to `transmit` (the World,
// stamped with the icount of the notify). Receive is device-initiated: the World hands a
// frame to receive() at a service point (a logged input), which copies it into the next
// receive buffer. Both directions are a pure function of guest actions and logged inputs.
//
// Guest mistakes never reach the host: a chain that breaks the queue rules (readable buffers
// in the receive queue, writable ones in the transmit queue, or anything VirtQueue refuses) is
// a device error (DEVICE_NEEDS_RESET); a frame that is too short, longer than the MTU allows
// or asks for an offload that was never offered is dropped and counted, and its buffer goes
// back to the guest with length 0.
#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <type_traits>
#include <vector>

#include "vmm/devices/virtio_mmio.h"

namespace tandem::vmm {

// The NIC as the machine's configuration describes it.
struct NicConfig {
  std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};  // QEMU's default
  uint16_t mtu = 1500;
  bool link_up = true;  // link state at power-on
};

class VirtioNet final : public VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 1;
  static constexpr uint64_t kFeatureMtu = uint64_t{1} << 3;
  static constexpr uint64_t kFeatureMac = uint64_t{1} << 5;
  static constexpr uint64_t kFeatureStatus = uint64_t{1} << 16;
  static constexpr unsigned kRxQueue = 0, kTxQueue = 1;
  static constexpr uint16_t kStatusLinkUp = 1;
  // struct virtio_net_hdr with num_buffers (always present with VERSION_1).
  static constexpr uint32_t kHeaderBytes = 12;
  static constexpr uint32_t kEthHeaderBytes = 14;
  static constexpr uint32_t kVlanTagBytes = 4;
  static constexpr uint16_t kMinMtu = 68, kMaxMtu = 9000;
  static constexpr uint8_t kHdrFlagNeedsCsum = 1;

  // Counters of what the device did; part of the device state (saved and hashed).
  struct Stats {
    uint64_t tx_frames = 0;
    uint64_t tx_bytes = 0;
    uint64_t tx_dropped_malformed = 0;  // too short, too long, or an offload request
    uint64_t tx_dropped_link_down = 0;
    uint64_t rx_frames = 0;
    uint64_t rx_bytes = 0;
    uint64_t rx_dropped_not_ready = 0;   // before DRIVER_OK, queue not ready, device failed
    uint64_t rx_dropped_link_down = 0;
    uint64_t rx_dropped_no_buffer = 0;   // the guest posted no receive buffer
    uint64_t rx_dropped_small_buffer = 0;
    uint64_t rx_dropped_invalid = 0;     // the host's frame was too short or too long
  };
  static_assert(std::has_unique_object_representations_v<Stats>);

  // Throws std::invalid_argument for an MTU outside kMinMtu..kMaxMtu.
  VirtioNet(const NicConfig& config, std::function<void(std::span<const uint8_t>)> transmit);

  // The largest Ethernet frame (without the virtio header) either direction carries.
  uint32_t max_frame_bytes() const { return config_.mtu + kEthHeaderBytes + kVlanTagBytes; }
  const NicConfig& config() const { return config_; }
  bool link_up() const { return link_up_; }
  const Stats& stats() const { return stats_; }

  // A frame from the host network. True if it is now in a receive buffer; otherwise it was
  // dropped and counted (not ready, link down, no or too small a buffer, invalid frame).
  bool receive(std::span<const uint8_t> frame);
  // True if receive() would find a receive buffer now (driver live, link up, buffer posted).
  // Changes nothing: a World may ask at any time (its answer is not part of the replay).
  bool can_receive() const;
  // Link up/down as the guest sees it (VIRTIO_NET_S_LINK_UP); a change raises a
  // configuration-change interrupt.
  void set_link(bool up);

  // VirtioDevice
  std::string_view name() const override { return "virtio-net"; }
  uint32_t device_id() const override { return kDeviceId; }
  uint64_t device_features() const override { return kFeatureMtu | kFeatureMac | kFeatureStatus; }
  unsigned queue_count() const override { return 2; }
  uint64_t read_config(uint64_t offset, unsigned size) const override;
  bool process_queue(unsigned index, VirtQueue& queue, GuestMemory& mem) override;
  void attach(VirtioMmio& transport) override { transport_ = &transport; }
  void save(StateWriter& out) const override;
  void restore(StateReader& in) override;

 private:
  bool transmit_queue(VirtQueue& queue, GuestMemory& mem);
  // Checks and sends one transmit chain; false if the frame was dropped.
  bool transmit_one(const DescriptorChain& chain, GuestMemory& mem);
  bool receive_into(std::span<const uint8_t> frame, VirtQueue& queue, GuestMemory& mem);

  NicConfig config_;
  std::function<void(std::span<const uint8_t>)> transmit_;
  VirtioMmio* transport_ = nullptr;
  bool link_up_;
  Stats stats_;
  std::vector<uint8_t> scratch_;  // one frame with its header, at most kHeaderBytes + max_frame_bytes()
};

}  // namespace tandem::vmm
