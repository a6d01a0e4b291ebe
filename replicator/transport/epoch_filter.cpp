#include "replicator/transport/epoch_filter.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "replicator/transport/envelope_text.h"

namespace tandem::replicator {

namespace {
constexpr uint64_t kStaleLogFirst = 10;
constexpr uint64_t kStaleLogEvery = 1000;
}  // namespace

bool EpochFilter::admit(const wire::Envelope& envelope, std::string_view peer_address) {
  const uint64_t floor = current_epoch_ ? std::max(floor_, current_epoch_()) : floor_;
  if (envelope.epoch() >= floor) {
    floor_ = envelope.epoch();
    return true;
  }
  const uint64_t dropped = ++dropped_;
  if (dropped <= kStaleLogFirst || dropped % kStaleLogEvery == 0) {
    spdlog::warn("link: stale epoch: dropped {} of epoch {} from {} (current epoch {}; {} dropped so far)",
                 body_name(envelope), envelope.epoch(), peer_address, floor, dropped);
  }
  return false;
}

}  // namespace tandem::replicator
