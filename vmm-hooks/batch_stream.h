#pragma once
// Where recorded batches go and where replayed batches come from: a log file today, the
// replication link later. Both sides see the same LogBatch messages.
#include <chrono>
#include <optional>

#include "proto/event_log.pb.h"
#include "vmm-hooks/event_log.h"

namespace tandem::hooks {

class BatchSink {
 public:
  virtual ~BatchSink() = default;
  virtual void write_batch(const log::LogBatch& batch) = 0;
};

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // The next batch, or nullopt when none is available now (for a file: no more at all).
  // Throws LogError on a bad batch.
  virtual std::optional<log::LogBatch> next_batch() = 0;
  // True when no batch will ever come again (end of file, or the stream was closed).
  virtual bool finished() const = 0;
  // Live streams: waits up to `timeout` for a batch; true if one may now be available.
  virtual bool wait_for_more(std::chrono::milliseconds /*timeout*/) { return false; }
};

class FileBatchSink : public BatchSink {
 public:
  FileBatchSink(const std::string& path, const log::LogHeader& header) : writer_(path, header) {}
  void write_batch(const log::LogBatch& batch) override { writer_.append(batch); }
  uint64_t bytes_written() const { return writer_.bytes_written(); }

 private:
  LogFileWriter writer_;
};

class FileBatchSource : public BatchSource {
 public:
  explicit FileBatchSource(LogFileReader& reader) : reader_(reader) {}
  std::optional<log::LogBatch> next_batch() override {
    auto batch = reader_.next();
    if (!batch) done_ = true;
    return batch;
  }
  bool finished() const override { return done_; }

 private:
  LogFileReader& reader_;
  bool done_ = false;
};

}  // namespace tandem::hooks
