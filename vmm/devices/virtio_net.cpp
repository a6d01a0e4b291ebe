#include "vmm/devices/virtio_net.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

namespace tandem::vmm {

namespace {
// struct virtio_net_config: mac[6], status u16, max_virtqueue_pairs u16, mtu u16.
constexpr uint64_t kConfigMac = 0, kConfigStatus = 6, kConfigMaxPairs = 8, kConfigMtu = 10;
constexpr size_t kConfigBytes = 12;

uint64_t total_len(const std::vector<GuestBuffer>& bufs) {
  uint64_t n = 0;
  for (const auto& b : bufs) n += b.len;
  return n;
}
}  // namespace

VirtioNet::VirtioNet(const NicConfig& config, std::function<void(std::span<const uint8_t>)> transmit)
    : config_(config), transmit_(std::move(transmit)), link_up_(config.link_up) {
  if (config.mtu < kMinMtu || config.mtu > kMaxMtu) {
    throw std::invalid_argument("virtio-net: MTU " + std::to_string(config.mtu) + " is outside " +
                                std::to_string(kMinMtu) + ".." + std::to_string(kMaxMtu));
  }
  scratch_.reserve(kHeaderBytes + max_frame_bytes());
}

uint64_t VirtioNet::read_config(uint64_t offset, unsigned size) const {
  uint8_t config[kConfigBytes] = {};
  std::memcpy(config + kConfigMac, config_.mac.data(), config_.mac.size());
  const uint16_t status = link_up_ ? kStatusLinkUp : 0;
  const uint16_t pairs = 1;
  std::memcpy(config + kConfigStatus, &status, 2);
  std::memcpy(config + kConfigMaxPairs, &pairs, 2);
  std::memcpy(config + kConfigMtu, &config_.mtu, 2);
  if (size > 8 || offset >= sizeof config || size > sizeof config - offset) return 0;
  uint64_t v = 0;
  std::memcpy(&v, config + offset, size);
  return v;
}

bool VirtioNet::process_queue(unsigned index, VirtQueue& queue, GuestMemory& mem) {
  // Receive buffers are used when a frame arrives (receive()), not when they are posted.
  if (index != kTxQueue) return false;
  return transmit_queue(queue, mem);
}

bool VirtioNet::transmit_queue(VirtQueue& queue, GuestMemory& mem) {
  bool used = false;
  // At most one queue's worth per notify, as for virtio-blk.
  for (uint32_t n = 0; n < queue.state().size && queue.has_available(mem); ++n) {
    const DescriptorChain chain = queue.pop(mem);
    if (!chain.writable.empty()) {
      throw VirtioError("transmit chain " + std::to_string(chain.head) + " has device-writable buffers");
    }
    transmit_one(chain, mem);
    queue.push_used(mem, chain.head, 0);
    used = true;
  }
  return used;
}

bool VirtioNet::transmit_one(const DescriptorChain& chain, GuestMemory& mem) {
  const uint64_t total = total_len(chain.readable);
  if (total < kHeaderBytes + kEthHeaderBytes || total > kHeaderBytes + max_frame_bytes()) {
    ++stats_.tx_dropped_malformed;
    return false;
  }
  scratch_.resize(static_cast<size_t>(total));
  size_t done = 0;
  for (const GuestBuffer& b : chain.readable) {
    // Buffers were checked to lie in RAM when the chain was popped.
    if (!mem.read(b.addr, std::span<uint8_t>(scratch_.data() + done, b.len))) {
      throw VirtioError("transmit buffer outside RAM");
    }
    done += b.len;
  }
  const uint8_t flags = scratch_[0], gso_type = scratch_[1];
  if ((flags & kHdrFlagNeedsCsum) || gso_type != 0) {
    ++stats_.tx_dropped_malformed;  // checksum and segmentation offloads were not offered
    return false;
  }
  if (!link_up_) {
    ++stats_.tx_dropped_link_down;
    return false;
  }
  const std::span<const uint8_t> frame(scratch_.data() + kHeaderBytes, scratch_.size() - kHeaderBytes);
  ++stats_.tx_frames;
  stats_.tx_bytes += frame.size();
  if (transmit_) transmit_(frame);
  return true;
}

bool VirtioNet::can_receive() const {
  return transport_ && link_up_ && transport_->queue_has_available(kRxQueue);
}

bool VirtioNet::receive(std::span<const uint8_t> frame) {
  if (frame.size() < kEthHeaderBytes || frame.size() > max_frame_bytes()) {
    ++stats_.rx_dropped_invalid;
    return false;
  }
  if (!link_up_) {
    ++stats_.rx_dropped_link_down;
    return false;
  }
  bool delivered = false;
  bool reached = false;
  if (transport_) {
    transport_->device_work(kRxQueue, [&](VirtQueue& q, GuestMemory& mem) {
      reached = true;
      if (!q.has_available(mem)) {
        ++stats_.rx_dropped_no_buffer;
        return false;
      }
      delivered = receive_into(frame, q, mem);
      return true;  // the buffer was used, with the frame or with length 0
    });
  }
  if (!reached) ++stats_.rx_dropped_not_ready;
  return delivered;
}

bool VirtioNet::receive_into(std::span<const uint8_t> frame, VirtQueue& queue, GuestMemory& mem) {
  const DescriptorChain chain = queue.pop(mem);
  if (!chain.readable.empty()) {
    throw VirtioError("receive chain " + std::to_string(chain.head) + " has device-readable buffers");
  }
  const uint64_t room = total_len(chain.writable);
  if (room < kHeaderBytes + frame.size()) {
    // The guest gets its buffer back empty (Linux counts a length error and reposts it).
    ++stats_.rx_dropped_small_buffer;
    queue.push_used(mem, chain.head, 0);
    return false;
  }
  // The header: no flags, no GSO, num_buffers = 1.
  scratch_.assign(kHeaderBytes, 0);
  scratch_[10] = 1;
  scratch_.insert(scratch_.end(), frame.begin(), frame.end());
  size_t done = 0;
  for (const GuestBuffer& b : chain.writable) {
    if (done == scratch_.size()) break;
    const size_t n = std::min<size_t>(b.len, scratch_.size() - done);
    if (!mem.write(b.addr, std::span<const uint8_t>(scratch_.data() + done, n))) {
      throw VirtioError("receive buffer outside RAM");
    }
    done += n;
  }
  queue.push_used(mem, chain.head, static_cast<uint32_t>(done));
  ++stats_.rx_frames;
  stats_.rx_bytes += frame.size();
  return true;
}

void VirtioNet::set_link(bool up) {
  if (up == link_up_) return;
  link_up_ = up;
  if (transport_) transport_->config_changed();
}

void VirtioNet::save(StateWriter& out) const {
  out.tag("VNET");
  out.pod(config_.mac);
  out.pod(config_.mtu);
  out.pod(static_cast<uint8_t>(link_up_));
  out.pod(stats_);
}

void VirtioNet::restore(StateReader& in) {
  in.expect_tag("VNET");
  std::array<uint8_t, 6> mac;
  uint16_t mtu;
  uint8_t link;
  Stats stats;
  in.pod(mac);
  in.pod(mtu);
  in.pod(link);
  in.pod(stats);
  if (mac != config_.mac || mtu != config_.mtu) {
    throw StateError("snapshot: the NIC was saved with another MAC address or MTU than this machine's --net");
  }
  if (link > 1) throw StateError("snapshot: virtio-net link state " + std::to_string(link) + " is not 0 or 1");
  link_up_ = link != 0;
  stats_ = stats;
}

}  // namespace tandem::vmm
