#pragma once
// Where recorded batches go and where replayed batches come from: a log file today, the
// replication link later. Both sides see the same LogBatch messages.
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
  // The next batch, or nullopt when there are no more. Throws LogError on a bad batch.
  virtual std::optional<log::LogBatch> next_batch() = 0;
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
  std::optional<log::LogBatch> next_batch() override { return reader_.next(); }

 private:
  LogFileReader& reader_;
};

}  // namespace tandem::hooks
