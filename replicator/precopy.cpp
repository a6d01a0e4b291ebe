#include "replicator/precopy.h"

#include <fmt/format.h>

#include <optional>
#include <utility>

namespace tandem::replicator {

Result<void> SyncSequence::accept(const wire::SyncChunk& chunk) {
  const auto refuse = [](std::string why) { return Error{ErrorKind::Invalid, std::move(why)}; };
  const std::string what = fmt::format("sync message {} (round {} part {}{})", chunk.sequence(), chunk.round(),
                                       chunk.part(), chunk.last() ? ", closing" : "");
  if (closed_) return refuse(what + " after the closing message");
  if (chunk.sequence() != next_sequence_) {
    return refuse(fmt::format("{} out of order: expected message {} ({})", what, next_sequence_,
                              chunk.sequence() > next_sequence_ ? "messages are missing" : "a repeat or an old message"));
  }
  uint32_t next_part = next_part_;
  if (next_sequence_ == 0) {
    if (chunk.round() != 0 || chunk.part() != 0 || chunk.last()) return refuse(what + ": the sync must open with round 0 part 0");
  } else if (chunk.round() == round_ + 1 && !chunk.last()) {
    next_part = 0;  // a new round
  } else if (chunk.round() != round_) {
    return refuse(fmt::format("{}: round {} cannot follow round {}", what, chunk.round(), round_));
  }
  if (chunk.part() != next_part) {
    return refuse(fmt::format("{} out of order: expected part {} of round {}", what, next_part, chunk.round()));
  }
  round_ = chunk.round();
  next_part_ = next_part + 1;
  ++next_sequence_;
  closed_ = chunk.last();
  return {};
}

PartPipeline::PartPipeline(size_t part_bytes, size_t batches, size_t batch_bytes, Send send)
    : part_bytes_(part_bytes), send_(std::move(send)) {
  for (size_t i = 0; i < batches; ++i) {
    pool_.push_back(std::make_unique<checkpoint::RecordBatch>());
    pool_.back()->bytes.reserve(batch_bytes + (size_t{64} << 10));  // a copy ends past the bound
    free_.push_back(pool_.back().get());
  }
  thread_ = std::thread([this] { run(); });
}

PartPipeline::~PartPipeline() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

checkpoint::RecordBatch* PartPipeline::free_batch() {
  std::lock_guard lock(mutex_);
  if (free_.empty()) return nullptr;
  checkpoint::RecordBatch* batch = free_.back();
  free_.pop_back();
  return batch;
}

void PartPipeline::submit(checkpoint::RecordBatch* batch) {
  {
    std::lock_guard lock(mutex_);
    round_done_ = false;
    queue_.push_back(batch);
  }
  cv_.notify_all();
}

void PartPipeline::end_round() { submit(nullptr); }

bool PartPipeline::round_done(checkpoint::Stats& stats) {
  std::lock_guard lock(mutex_);
  if (error_) std::rethrow_exception(error_);
  if (!round_done_) return false;
  stats = stats_;
  return true;
}

void PartPipeline::wait(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  cv_.wait_for(lock, timeout, [this] { return !free_.empty() || round_done_ || error_; });
}

bool PartPipeline::stopping() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

void PartPipeline::run() {
  std::optional<checkpoint::PartEncoder> encoder;
  std::unique_lock lock(mutex_);
  for (;;) {
    cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    checkpoint::RecordBatch* batch = queue_.front();
    queue_.pop_front();
    const bool failed = error_ != nullptr;
    lock.unlock();
    checkpoint::Stats stats;
    std::exception_ptr error;
    if (!failed) {  // after a failure batches only go back to the pool
      try {
        if (!encoder) encoder.emplace(part_bytes_, [this](std::string&& part) { send_(std::move(part)); });
        if (batch) {
          encoder->add(*batch);
        } else {
          stats = encoder->finish();
          encoder.reset();
        }
      } catch (...) {
        error = std::current_exception();
        encoder.reset();
      }
    }
    lock.lock();
    if (error) error_ = error;
    if (batch) {
      free_.push_back(batch);
    } else if (!error_) {
      stats_ = stats;
      round_done_ = true;
    }
    cv_.notify_all();
  }
}

}  // namespace tandem::replicator
