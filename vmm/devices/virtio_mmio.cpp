#include "vmm/devices/virtio_mmio.h"

#include <spdlog/spdlog.h>

namespace tandem::vmm {

uint64_t VirtioMmio::offered_features() const {
  return device_ ? device_->device_features() | kVirtioFVersion1 : 0;
}

VirtQueue* VirtioMmio::selected_queue() {
  if (!device_ || state_.queue_sel >= device_->queue_count() || state_.queue_sel >= kMaxQueues) {
    return nullptr;
  }
  return &queues_[state_.queue_sel];
}

bool VirtioMmio::read(uint64_t offset, unsigned size, uint64_t& value) {
  if (offset >= kConfig) {
    value = device_ ? device_->read_config(offset - kConfig, size) : 0;
    return true;
  }
  if (size != 4 || offset % 4 != 0) return false;  // registers are 32-bit only
  const VirtQueue* q = selected_queue();
  switch (offset) {
    case kMagicValue:
      value = kMagic;
      break;
    case kVersion:
      value = 2;
      break;
    case kDeviceId:
      value = device_ ? device_->device_id() : 0;
      break;
    case kVendor:
      value = kVendorId;
      break;
    case kDeviceFeatures:
      value = state_.device_features_sel == 0   ? offered_features() & 0xffffffff
              : state_.device_features_sel == 1 ? offered_features() >> 32
                                                : 0;
      break;
    case kQueueNumMax:
      value = q ? device_->queue_max_size() : 0;
      break;
    case kQueueNum:
      value = q ? q->state().size : 0;
      break;
    case kQueueReady:
      value = q ? q->state().ready : 0;
      break;
    case kInterruptStatus:
      value = state_.interrupt_status;
      break;
    case kStatus:
      value = state_.status;
      break;
    case kQueueDescLow:
      value = q ? q->state().desc_addr & 0xffffffff : 0;
      break;
    case kQueueDescHigh:
      value = q ? q->state().desc_addr >> 32 : 0;
      break;
    case kQueueDriverLow:
      value = q ? q->state().avail_addr & 0xffffffff : 0;
      break;
    case kQueueDriverHigh:
      value = q ? q->state().avail_addr >> 32 : 0;
      break;
    case kQueueDeviceLow:
      value = q ? q->state().used_addr & 0xffffffff : 0;
      break;
    case kQueueDeviceHigh:
      value = q ? q->state().used_addr >> 32 : 0;
      break;
    case kConfigGeneration:
      value = state_.config_generation;
      break;
    default:
      value = 0;  // write-only and reserved registers read as zero
  }
  return true;
}

namespace {
void set_low(uint64_t& reg, uint64_t v) { reg = (reg & ~uint64_t{0xffffffff}) | (v & 0xffffffff); }
void set_high(uint64_t& reg, uint64_t v) { reg = (reg & 0xffffffff) | ((v & 0xffffffff) << 32); }
}  // namespace

bool VirtioMmio::write(uint64_t offset, unsigned size, uint64_t value) {
  if (offset >= kConfig) {
    if (device_) device_->write_config(offset - kConfig, size, value);
    return true;
  }
  if (size != 4 || offset % 4 != 0) return false;
  const uint32_t v = static_cast<uint32_t>(value);
  VirtQueue* q = selected_queue();
  // Queue configuration is frozen while the queue is live (as Firecracker does).
  VirtQueue* configurable = q && !q->state().ready ? q : nullptr;
  switch (offset) {
    case kDeviceFeaturesSel:
      state_.device_features_sel = v;
      break;
    case kDriverFeatures:
      if (state_.status & kStatusFeaturesOk) break;  // features are frozen after FEATURES_OK
      if (state_.driver_features_sel == 0) set_low(state_.driver_features, v);
      if (state_.driver_features_sel == 1) set_high(state_.driver_features, v);
      break;
    case kDriverFeaturesSel:
      state_.driver_features_sel = v;
      break;
    case kQueueSel:
      state_.queue_sel = v;
      break;
    case kQueueNum:
      if (configurable) configurable->state().size = v;
      break;
    case kQueueReady:
      if (!q) break;
      if (v == 0) {
        q->state().ready = 0;
      } else if (!q->state().ready) {
        try {
          q->validate(mem_, device_->queue_max_size());
          q->state().ready = 1;
        } catch (const VirtioError& e) {
          fail(e.what());
        }
      }
      break;
    case kQueueNotify:
      notify(v);
      break;
    case kInterruptAck:
      state_.interrupt_status &= ~v;
      refresh_irq();
      break;
    case kStatus:
      if (v == 0) {
        reset();
        break;
      }
      if ((v & kStatusFeaturesOk) && !(state_.status & kStatusFeaturesOk)) {
        const uint64_t offered = offered_features();
        // Refuse FEATURES_OK for features we never offered or a legacy (pre-1.0) driver.
        const bool acceptable = (state_.driver_features & ~offered) == 0 &&
                                (state_.driver_features & kVirtioFVersion1);
        state_.status = (state_.status & kStatusNeedsReset) |
                        (acceptable ? v : v & ~kStatusFeaturesOk);
        break;
      }
      state_.status = (state_.status & kStatusNeedsReset) | v;  // NEEDS_RESET sticks until reset
      break;
    case kQueueDescLow:
      if (configurable) set_low(configurable->state().desc_addr, v);
      break;
    case kQueueDescHigh:
      if (configurable) set_high(configurable->state().desc_addr, v);
      break;
    case kQueueDriverLow:
      if (configurable) set_low(configurable->state().avail_addr, v);
      break;
    case kQueueDriverHigh:
      if (configurable) set_high(configurable->state().avail_addr, v);
      break;
    case kQueueDeviceLow:
      if (configurable) set_low(configurable->state().used_addr, v);
      break;
    case kQueueDeviceHigh:
      if (configurable) set_high(configurable->state().used_addr, v);
      break;
    default:
      break;  // read-only and reserved registers ignore writes
  }
  return true;
}

bool VirtioMmio::queue_live(unsigned index) const {
  if (!device_ || index >= device_->queue_count() || index >= kMaxQueues) return false;
  if (!(state_.status & kStatusDriverOk) || (state_.status & kStatusNeedsReset)) return false;
  return queues_[index].state().ready != 0;
}

bool VirtioMmio::device_work(unsigned index, const std::function<bool(VirtQueue&, GuestMemory&)>& work) {
  if (!queue_live(index)) return false;
  try {
    if (work(queues_[index], mem_)) {
      state_.interrupt_status |= kInterruptUsedBuffer;
      refresh_irq();
      return true;
    }
  } catch (const VirtioError& e) {
    fail(e.what());
  }
  return false;
}

bool VirtioMmio::queue_has_available(unsigned index) const {
  if (!queue_live(index)) return false;
  try {
    return queues_[index].has_available(mem_);
  } catch (const VirtioError&) {
    return false;
  }
}

void VirtioMmio::config_changed() {
  ++state_.config_generation;
  if (!(state_.status & kStatusDriverOk)) return;
  state_.interrupt_status |= kInterruptConfigChange;
  refresh_irq();
}

void VirtioMmio::notify(uint32_t queue_index) {
  if (!queue_live(queue_index)) return;
  VirtQueue& q = queues_[queue_index];
  try {
    if (device_->process_queue(queue_index, q, mem_)) {
      state_.interrupt_status |= kInterruptUsedBuffer;
      refresh_irq();
    }
  } catch (const VirtioError& e) {
    fail(e.what());
  }
}

void VirtioMmio::fail(std::string_view why) {
  spdlog::warn("{}: driver error, device needs reset: {}", name(), why);
  state_.status |= kStatusNeedsReset;
  state_.interrupt_status |= kInterruptConfigChange;
  refresh_irq();
}

void VirtioMmio::reset() {
  state_ = State{};
  for (auto& q : queues_) q.reset();
  if (device_) device_->reset();
  refresh_irq();
}

void VirtioMmio::save(StateWriter& out) const {
  out.tag("VIRT");
  out.pod(device_ ? device_->device_id() : uint32_t{0});
  out.pod(state_);
  for (const auto& q : queues_) out.pod(q.state());
  if (device_) device_->save(out);
}

void VirtioMmio::restore(StateReader& in) {
  in.expect_tag("VIRT");
  uint32_t id;
  in.pod(id);
  const uint32_t expected = device_ ? device_->device_id() : 0;
  if (id != expected) {
    throw StateError("snapshot: virtio slot holds device id " + std::to_string(id) +
                     " but this machine has " + std::to_string(expected) +
                     " there (was it saved with a different --disk or --net setting?)");
  }
  State s;
  in.pod(s);
  std::array<VirtQueue::State, kMaxQueues> qs;
  for (auto& q : qs) in.pod(q);
  for (unsigned i = 0; i < kMaxQueues; ++i) {
    if (!qs[i].ready) continue;
    VirtQueue check;
    check.state() = qs[i];
    try {
      if (!device_ || i >= device_->queue_count()) throw VirtioError("queue does not exist");
      check.validate(mem_, device_->queue_max_size());
    } catch (const VirtioError& e) {
      throw StateError("snapshot: virtio queue " + std::to_string(i) + " is inconsistent: " + e.what());
    }
  }
  if (device_) device_->restore(in);
  state_ = s;
  for (unsigned i = 0; i < kMaxQueues; ++i) queues_[i].state() = qs[i];
  refresh_irq();
}

}  // namespace tandem::vmm
