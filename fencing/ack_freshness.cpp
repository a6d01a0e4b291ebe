#include "fencing/ack_freshness.h"

#include <algorithm>

namespace tandem::fencing {

AckFreshness::Clock::duration AckFreshness::window(std::chrono::milliseconds holdoff) {
  // holdoff * 0.95 - holdoff / 4, in microseconds so short test holdoffs keep precision.
  const auto us = std::chrono::microseconds(holdoff);
  return us * 95 / 100 - us / 4;
}

void AckFreshness::reset() {
  std::lock_guard lock(mutex_);
  armed_ = false;
  holdoff_ = std::chrono::milliseconds(0);
  batches_.clear();
  heartbeats_.clear();
  fresh_until_ = {};
}

void AckFreshness::arm() {
  std::lock_guard lock(mutex_);
  armed_ = true;
}

void AckFreshness::disarm() {
  std::lock_guard lock(mutex_);
  armed_ = false;
}

bool AckFreshness::armed() const {
  std::lock_guard lock(mutex_);
  return armed_;
}

void AckFreshness::remember(Sent& sent, uint64_t token, Clock::time_point at) {
  sent.emplace_back(token, at);
  if (sent.size() > kMaxRemembered) sent.pop_front();
}

void AckFreshness::batch_sent(uint64_t sequence, Clock::time_point at) {
  std::lock_guard lock(mutex_);
  remember(batches_, sequence, at);
}

void AckFreshness::heartbeat_sent(uint64_t token, Clock::time_point at) {
  std::lock_guard lock(mutex_);
  remember(heartbeats_, token, at);
}

void AckFreshness::confirm_locked(Sent& sent, uint64_t token) {
  // Tokens grow along the link (batch sequences count up, sent_ns is a monotonic clock), and
  // acks name the newest received: entries before the one named will not be named again.
  const auto it = std::find_if(sent.begin(), sent.end(), [&](const auto& e) { return e.first == token; });
  if (it == sent.end()) return;  // unknown: from another link, forgotten, or made up
  if (holdoff_.count() > 0) fresh_until_ = std::max(fresh_until_, it->second + window(holdoff_));
  sent.erase(sent.begin(), it);
}

void AckFreshness::batch_acknowledged(uint64_t sequence, std::chrono::milliseconds holdoff) {
  std::lock_guard lock(mutex_);
  holdoff_ = holdoff;
  confirm_locked(batches_, sequence);
}

void AckFreshness::heartbeat_echoed(uint64_t token) {
  std::lock_guard lock(mutex_);
  confirm_locked(heartbeats_, token);
}

bool AckFreshness::fresh(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  return armed_ && now < fresh_until_;
}

int64_t AckFreshness::ms_left(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  if (!armed_ || now >= fresh_until_) return -1;
  return std::chrono::duration_cast<std::chrono::milliseconds>(fresh_until_ - now).count();
}

bool may_release_output(bool lease_valid, bool acknowledged, const AckFreshness& acks,
                        AckFreshness::Clock::time_point now) {
  return lease_valid || (acknowledged && acks.fresh(now));
}

}  // namespace tandem::fencing
