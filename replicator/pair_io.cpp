#include "replicator/pair_io.h"

#include <fmt/format.h>

namespace tandem::replicator {

void OutputTail::output(vmm::OutputChannel channel, uint64_t, std::span<const uint8_t> bytes) {
  if (static_cast<size_t>(channel) >= vmm::kOutputChannels || bytes.empty()) return;
  Tail& t = of(channel);
  t.pieces.emplace_back(bytes.begin(), bytes.end());
  t.produced += bytes.size();
  t.bytes += bytes.size();
  // Bound the tail: a primary that never sends release markers cannot grow it forever.
  constexpr size_t kMaxTail = 4 << 20;
  while (t.bytes > kMaxTail && t.pieces.size() > 1) {
    t.base += t.pieces.front().size();
    t.bytes -= t.pieces.front().size();
    t.pieces.pop_front();
  }
}

void OutputTail::trim_released(Channel channel, uint64_t released) {
  Tail& t = of(channel);
  while (!t.pieces.empty() && released > t.base) {
    std::string& front = t.pieces.front();
    if (released - t.base >= front.size()) {
      t.base += front.size();
      t.bytes -= front.size();
      t.pieces.pop_front();
    } else if (channel == Channel::Console) {
      // A console stream may be released part-way through a piece.
      const size_t drop = static_cast<size_t>(released - t.base);
      front.erase(0, drop);
      t.base += drop;
      t.bytes -= drop;
    } else {
      break;  // a frame leaves whole
    }
  }
}

std::vector<std::string> OutputTail::unconfirmed(Channel channel, uint64_t released) const {
  const Tail& t = of(channel);
  std::vector<std::string> out;
  if (released >= t.produced) return out;
  std::string console;
  uint64_t at = t.base;
  for (const std::string& piece : t.pieces) {
    const uint64_t end = at + piece.size();
    if (end > released) {
      const size_t skip = channel == Channel::Console && released > at ? static_cast<size_t>(released - at) : 0;
      if (channel == Channel::Console) {
        console.append(piece, skip);
      } else {
        out.push_back(piece);
      }
    }
    at = end;
  }
  if (channel == Channel::Console && !console.empty()) out.push_back(std::move(console));
  return out;
}

std::string OutputTail::unconfirmed(uint64_t released) const {
  std::vector<std::string> pieces = unconfirmed(Channel::Console, released);
  return pieces.empty() ? std::string() : std::move(pieces.front());
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
