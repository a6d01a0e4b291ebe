#include "replicator/output_gate.h"

#include <algorithm>

namespace tandem::replicator {

OutputGate::OutputGate(hooks::OutputPort* console, hooks::OutputPort* net) : ports_{console, net} {}

void OutputGate::set_gated(bool gated) {
  std::lock_guard lock(mutex_);
  gated_ = gated;
  if (gated) acked_ = 0;
  drain_locked();
}

void OutputGate::set_release_policy(fencing::ReleasePolicy* policy) {
  std::lock_guard lock(mutex_);
  policy_ = policy;
}

void OutputGate::pump() {
  std::lock_guard lock(mutex_);
  if (!held_.empty()) drain_locked();
}

void OutputGate::flush() {
  for (hooks::OutputPort* port : ports_)
    if (port) port->flush();
}

bool OutputGate::releasable_locked(uint64_t icount) const {
  // Output produced at icount X is covered once the log is complete up to X + 1: every
  // record before the instruction after the one that produced it.
  if (gated_ && icount >= acked_) return false;
  return !policy_ || policy_->may_release(gated_);
}

void OutputGate::drain_locked() {
  if (held_.empty()) return;
  size_t n = 0;
  while (n < held_.size() && releasable_locked(held_[n].icount)) ++n;
  if (n == 0) return;
  const auto now = Clock::now();
  for (size_t i = 0; i < n;) {
    const Held& first = held_[i];
    size_t j = i + 1;
    if (first.channel == vmm::OutputChannel::Console) {
      // Every console line one acknowledgement covers goes out in one write: a kv client
      // with many requests in flight gets its replies in one segment, not a send per line.
      while (j < n && held_[j].channel == vmm::OutputChannel::Console) ++j;
    }
    if (j == i + 1) {
      release_locked(first.channel, {reinterpret_cast<const uint8_t*>(first.bytes.data()), first.bytes.size()},
                     first.produced);
    } else {
      release_buffer_.clear();
      for (size_t k = i; k < j; ++k) release_buffer_ += held_[k].bytes;
      release_locked(first.channel,
                     {reinterpret_cast<const uint8_t*>(release_buffer_.data()), release_buffer_.size()},
                     first.produced, j - i);
      // Each line's own latency: from its production to this release.
      for (size_t k = i + 1; k < j; ++k) note_latency_locked(first.channel, held_[k].produced, now);
    }
    i = j;
  }
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
  if (held_.empty()) flush();
}

void OutputGate::release_locked(vmm::OutputChannel channel, std::span<const uint8_t> bytes,
                                Clock::time_point produced, uint64_t items) {
  if (hooks::OutputPort* port = ports_[index(channel)]) port->write_output(bytes);
  released_[index(channel)] += bytes.size();
  released_items_[index(channel)] += items;
  note_latency_locked(channel, produced, Clock::now());
}

void OutputGate::note_latency_locked(vmm::OutputChannel channel, Clock::time_point produced,
                                     Clock::time_point released) {
  std::vector<double>& samples = latencies_us_[index(channel)];
  const double us = std::chrono::duration<double, std::micro>(released - produced).count();
  samples.push_back(us);
  std::deque<double>& recent = recent_us_[index(channel)];
  recent.push_back(us);
  if (recent.size() > kLatencyWindow) recent.pop_front();
  if (samples.size() > 100000) samples.erase(samples.begin(), samples.begin() + 50000);
}

void OutputGate::acknowledge(uint64_t icount) {
  std::lock_guard lock(mutex_);
  acked_ = std::max(acked_, icount);
  drain_locked();
}

uint64_t OutputGate::held_bytes() const {
  std::lock_guard lock(mutex_);
  uint64_t n = 0;
  for (const Held& h : held_) n += h.bytes.size();
  return n;
}

void OutputGate::reset_counts() {
  for (auto& r : released_) r = 0;
  for (auto& r : released_items_) r = 0;
}

OutputGate::ChannelState OutputGate::state(vmm::OutputChannel channel) const {
  ChannelState s;
  std::vector<double> recent;
  {
    std::lock_guard lock(mutex_);
    for (const Held& h : held_) {
      if (h.channel != channel) continue;
      s.held_bytes += h.bytes.size();
      ++s.held_items;
    }
    recent.assign(recent_us_[index(channel)].begin(), recent_us_[index(channel)].end());
  }
  s.released_bytes = released_[index(channel)].load();
  s.released_items = released_items_[index(channel)].load();
  if (!recent.empty()) {
    auto mid = recent.begin() + static_cast<std::ptrdiff_t>(recent.size() / 2);
    std::nth_element(recent.begin(), mid, recent.end());
    s.latency_p50_us = *mid;
    s.latency_max_us = *std::max_element(recent.begin(), recent.end());
  }
  return s;
}

std::vector<double> OutputGate::take_latencies(vmm::OutputChannel channel) {
  std::lock_guard lock(mutex_);
  return std::exchange(latencies_us_[index(channel)], {});
}

void OutputGate::output(vmm::OutputChannel channel, uint64_t icount, std::span<const uint8_t> bytes) {
  if (bytes.empty() || index(channel) >= vmm::kOutputChannels) return;
  std::lock_guard lock(mutex_);
  const auto now = Clock::now();
  if (held_.empty() && releasable_locked(icount)) {
    release_locked(channel, bytes, now);
    return;
  }
  held_.push_back(Held{channel, icount, std::string(bytes.begin(), bytes.end()), now});
  drain_locked();  // held output may be releasable again (the lease was renewed late)
}

}  // namespace tandem::replicator
