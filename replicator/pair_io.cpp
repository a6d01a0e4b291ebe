#include "replicator/pair_io.h"

#include <fmt/format.h>

namespace tandem::replicator {

void GatedConsole::set_gated(bool gated) {
  std::lock_guard lock(mutex_);
  gated_ = gated;
  if (gated) acked_ = 0;
  drain_locked();
}

void GatedConsole::set_release_check(std::function<bool(bool)> may_release) {
  std::lock_guard lock(mutex_);
  may_release_ = std::move(may_release);
}

void GatedConsole::pump() {
  std::lock_guard lock(mutex_);
  if (!held_.empty()) drain_locked();
}

bool GatedConsole::wait_input(std::chrono::nanoseconds timeout) {
  pump();
  return inner_.wait_input(timeout);
}

bool GatedConsole::releasable_locked(const Held& h) const {
  // Output produced at icount X is covered once the log is complete up to X + 1: every
  // record before the instruction after the one that printed it.
  if (gated_ && h.icount >= acked_) return false;
  return !may_release_ || may_release_(gated_);
}

void GatedConsole::drain_locked() {
  if (held_.empty()) return;
  // Everything one acknowledgement covers goes out in one write: a kv client with many
  // requests in flight gets its replies in one segment rather than a send per line.
  size_t n = 0;
  while (n < held_.size() && releasable_locked(held_[n])) ++n;
  if (n == 0) return;
  if (n == 1) {
    release_locked(held_.front().bytes, held_.front().produced);
  } else {
    release_buffer_.clear();
    for (size_t i = 0; i < n; ++i) release_buffer_ += held_[i].bytes;
    release_locked(release_buffer_, held_.front().produced);
    // Each line's own latency: from its production to this release.
    const auto now = std::chrono::steady_clock::now();
    for (size_t i = 1; i < n; ++i) note_latency_locked(held_[i].produced, now);
  }
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
  if (held_.empty()) inner_.flush();
}

void GatedConsole::release_locked(const std::string& bytes, std::chrono::steady_clock::time_point produced) {
  inner_.write_output({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  released_ += bytes.size();
  note_latency_locked(produced, std::chrono::steady_clock::now());
}

void GatedConsole::note_latency_locked(std::chrono::steady_clock::time_point produced,
                                       std::chrono::steady_clock::time_point released) {
  latencies_us_.push_back(std::chrono::duration<double, std::micro>(released - produced).count());
  if (latencies_us_.size() > 100000) latencies_us_.erase(latencies_us_.begin(), latencies_us_.begin() + 50000);
}

void GatedConsole::acknowledge(uint64_t icount) {
  std::lock_guard lock(mutex_);
  acked_ = std::max(acked_, icount);
  drain_locked();
}

uint64_t GatedConsole::held_bytes() const {
  std::lock_guard lock(mutex_);
  uint64_t n = 0;
  for (const Held& h : held_) n += h.bytes.size();
  return n;
}

std::vector<double> GatedConsole::take_latencies() {
  std::lock_guard lock(mutex_);
  return std::exchange(latencies_us_, {});
}

void GatedConsole::write_output(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  std::lock_guard lock(mutex_);
  Held h{output_icount_.load(), std::string(bytes.begin(), bytes.end()), std::chrono::steady_clock::now()};
  if (held_.empty() && releasable_locked(h)) {
    release_locked(h.bytes, h.produced);
    return;
  }
  held_.push_back(std::move(h));
  drain_locked();  // held output may be releasable again (the lease was renewed late)
}

void OutputTail::write_output(std::span<const uint8_t> bytes) {
  tail_.append(bytes.begin(), bytes.end());
  produced_ += bytes.size();
  // Bound the tail: a primary that never sends release markers cannot grow it forever.
  constexpr size_t kMaxTail = 4 << 20;
  if (tail_.size() > kMaxTail) {
    const size_t drop = tail_.size() - kMaxTail;
    tail_.erase(0, drop);
    base_ += drop;
  }
}

void OutputTail::trim_released(uint64_t released) {
  if (released <= base_) return;
  const uint64_t drop = std::min<uint64_t>(released - base_, tail_.size());
  tail_.erase(0, drop);
  base_ += drop;
}

std::string OutputTail::unconfirmed(uint64_t released) const {
  if (released >= produced_) return {};
  const uint64_t from = std::max(released, base_);
  return tail_.substr(from - base_);
}

bool StreamBatchSource::push(log::LogBatch batch, bool wake) {
  {
    std::lock_guard lock(mutex_);
    if (closed_) return true;  // the replay runs out what it has; later batches do not matter
    if (!gap_.empty()) return false;
    if (batch.sequence() != next_sequence_) {
      gap_ = fmt::format("log batch {} missing: batch {} arrived", next_sequence_, batch.sequence());
      return false;
    }
    ++next_sequence_;
    complete_to_ = std::max(complete_to_, batch.complete_to_icount());
    last_sequence_ = batch.sequence();
    queue_.push_back(std::move(batch));
  }
  if (wake) cv_.notify_all();
  return true;
}

std::string StreamBatchSource::gap() const {
  std::lock_guard lock(mutex_);
  return gap_;
}

void StreamBatchSource::close() {
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
  }
  cv_.notify_all();
}

std::optional<log::LogBatch> StreamBatchSource::next_batch() {
  std::lock_guard lock(mutex_);
  if (queue_.empty()) return std::nullopt;
  log::LogBatch b = std::move(queue_.front());
  queue_.pop_front();
  return b;
}

bool StreamBatchSource::finished() const {
  std::lock_guard lock(mutex_);
  return closed_ && queue_.empty();
}

bool StreamBatchSource::wait_for_more(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [this] { return !queue_.empty() || closed_; }) && !queue_.empty();
}

uint64_t StreamBatchSource::complete_to() const {
  std::lock_guard lock(mutex_);
  return complete_to_;
}

uint64_t StreamBatchSource::last_sequence() const {
  std::lock_guard lock(mutex_);
  return last_sequence_;
}

size_t StreamBatchSource::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void LinkBatchSink::write_batch(const log::LogBatch& batch) {
  wire::Envelope e;
  *e.mutable_batch() = batch;
  bytes_ += batch.ByteSizeLong();
  complete_to_ = batch.complete_to_icount();
  if (on_sent_) on_sent_(batch.sequence());  // before the send: the ack cannot come first
  link_->send(std::move(e));
}

}  // namespace tandem::replicator
