#pragma once
// The event-log file: magic, then frames. The first frame is the LogHeader, every later
// frame one LogBatch. A frame is
//   u32 little-endian payload length | u64 little-endian XXH3-64 of the payload | payload
// so a reader can tell a clean end, a truncated tail and a corrupted batch apart and name
// the byte offset of the problem. The live pair streams the same frames.
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>

#include "proto/event_log.pb.h"

namespace tandem::hooks {

// 2: audit records hold the incremental state hash (per-page XXH3, docs/vmm.md); a version-1
// log would replay into a false divergence at its first audit, so it is refused up front.
// 3: the disk's content hash (in the state hash of the header and audits, and the header's
// disk_digest) is XXH3 over 64 KiB block hashes (DiskImage); a version-2 log with a disk
// would diverge at its initial state hash.
// 4: the state hash covers the F/D state (f registers, fcsr): a version-3 log would diverge at
// its initial state hash.
inline constexpr uint32_t kLogFormatVersion = 4;
inline constexpr char kLogMagic[8] = {'T', 'N', 'D', 'M', 'L', 'O', 'G', '1'};
inline constexpr uint32_t kMaxFrameBytes = 64u << 20;
inline constexpr size_t kFrameHeaderBytes = 12;

// A log that cannot be read: the message names the file offset of the problem.
class LogError : public std::runtime_error {
 public:
  LogError(uint64_t offset, const std::string& what)
      : std::runtime_error("offset " + std::to_string(offset) + ": " + what), offset_(offset) {}
  uint64_t offset() const { return offset_; }

 private:
  uint64_t offset_;
};

// Serialises a message into one frame (header + payload).
std::string encode_frame(const google::protobuf::MessageLite& message);

// Appends frames to a file. Each append is one write(2) of whole frames, so a killed
// process leaves the file readable up to its last complete batch.
class LogFileWriter {
 public:
  // Creates/truncates `path`, writes the magic and the header frame. Throws std::runtime_error.
  LogFileWriter(const std::string& path, const log::LogHeader& header, bool fsync_each_batch = false);
  ~LogFileWriter();
  LogFileWriter(const LogFileWriter&) = delete;
  LogFileWriter& operator=(const LogFileWriter&) = delete;

  void append(const log::LogBatch& batch);
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  void write_all(const std::string& bytes);
  int fd_ = -1;
  bool fsync_each_batch_;
  uint64_t bytes_written_ = 0;
};

// Reads a log file frame by frame.
class LogFileReader {
 public:
  // Opens `path`, checks the magic, reads and validates the header. Throws LogError
  // (or std::runtime_error when the file cannot be opened).
  explicit LogFileReader(const std::string& path);
  ~LogFileReader();
  LogFileReader(const LogFileReader&) = delete;
  LogFileReader& operator=(const LogFileReader&) = delete;

  const log::LogHeader& header() const { return header_; }

  // The next batch, or nullopt at a clean end of file. Throws LogError on a truncated or
  // corrupted frame, a bad protobuf, or a batch sequence gap.
  std::optional<log::LogBatch> next();
  uint64_t offset() const { return offset_; }

 private:
  // Reads one frame's payload; false at a clean EOF exactly on a frame boundary.
  bool read_frame(std::string& payload, uint64_t& frame_offset);
  std::FILE* file_ = nullptr;
  uint64_t offset_ = 0;
  uint64_t next_sequence_ = 0;
  log::LogHeader header_;
};

}  // namespace tandem::hooks
