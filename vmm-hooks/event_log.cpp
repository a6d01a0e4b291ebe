#include "vmm-hooks/event_log.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace tandem::hooks {

namespace {

void put_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

std::string encode_frame(const google::protobuf::MessageLite& message) {
  std::string payload;
  if (!message.SerializeToString(&payload)) throw std::runtime_error("event log: cannot serialise");
  if (payload.size() > kMaxFrameBytes) throw std::runtime_error("event log: frame too large");
  std::string frame;
  frame.reserve(kFrameHeaderBytes + payload.size());
  put_le(frame, payload.size(), 4);
  put_le(frame, XXH3_64bits(payload.data(), payload.size()), 8);
  frame += payload;
  return frame;
}

LogFileWriter::LogFileWriter(const std::string& path, const log::LogHeader& header,
                             bool fsync_each_batch)
    : fsync_each_batch_(fsync_each_batch) {
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) throw std::runtime_error("cannot create log " + path + ": " + std::strerror(errno));
  write_all(std::string(kLogMagic, sizeof kLogMagic) + encode_frame(header));
}

LogFileWriter::~LogFileWriter() {
  if (fd_ >= 0) ::close(fd_);
}

void LogFileWriter::append(const log::LogBatch& batch) {
  write_all(encode_frame(batch));
  if (fsync_each_batch_) ::fdatasync(fd_);
}

void LogFileWriter::write_all(const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("event log write failed: ") + std::strerror(errno));
    }
    done += static_cast<size_t>(n);
  }
  bytes_written_ += bytes.size();
}

LogFileReader::LogFileReader(const std::string& path) {
  file_ = std::fopen(path.c_str(), "rb");
  if (!file_) throw std::runtime_error("cannot open log " + path + ": " + std::strerror(errno));
  char magic[sizeof kLogMagic];
  if (std::fread(magic, 1, sizeof magic, file_) != sizeof magic ||
      std::memcmp(magic, kLogMagic, sizeof magic) != 0) {
    std::fclose(file_);
    file_ = nullptr;
    throw LogError(0, "not a Tandem event log (bad magic)");
  }
  offset_ = sizeof magic;
  std::string payload;
  uint64_t at = offset_;
  try {
    if (!read_frame(payload, at)) throw LogError(at, "log has no header");
    if (!header_.ParseFromString(payload)) throw LogError(at, "header is not a valid LogHeader");
    if (header_.format_version() != kLogFormatVersion) {
      throw LogError(at, "unsupported log format version " +
                             std::to_string(header_.format_version()) + " (this build reads " +
                             std::to_string(kLogFormatVersion) + ")");
    }
  } catch (...) {
    std::fclose(file_);
    file_ = nullptr;
    throw;
  }
}

LogFileReader::~LogFileReader() {
  if (file_) std::fclose(file_);
}

bool LogFileReader::read_frame(std::string& payload, uint64_t& frame_offset) {
  frame_offset = offset_;
  unsigned char head[kFrameHeaderBytes];
  const size_t got = std::fread(head, 1, sizeof head, file_);
  if (got == 0 && std::feof(file_)) return false;
  if (got != sizeof head) throw LogError(frame_offset, "truncated frame header");
  const uint64_t length = get_le(head, 4);
  const uint64_t digest = get_le(head + 4, 8);
  if (length > kMaxFrameBytes) {
    throw LogError(frame_offset, "frame length " + std::to_string(length) + " exceeds the limit");
  }
  // Grow the buffer only as the bytes arrive: a header that announces 64 MiB in a short
  // (corrupt or truncated) file must not cost 64 MiB before it is refused.
  constexpr uint64_t kReadPiece = uint64_t{1} << 20;
  payload.clear();
  for (uint64_t have = 0; have < length;) {
    const uint64_t piece = std::min(kReadPiece, length - have);
    payload.resize(have + piece);
    if (std::fread(payload.data() + have, 1, piece, file_) != piece) {
      throw LogError(frame_offset, "truncated frame (" + std::to_string(length) + " bytes announced)");
    }
    have += piece;
  }
  if (XXH3_64bits(payload.data(), payload.size()) != digest) {
    throw LogError(frame_offset, "frame checksum mismatch (corrupted batch)");
  }
  offset_ += sizeof head + length;
  return true;
}

std::optional<log::LogBatch> LogFileReader::next() {
  std::string payload;
  uint64_t at = 0;
  if (!read_frame(payload, at)) return std::nullopt;
  log::LogBatch batch;
  if (!batch.ParseFromString(payload)) throw LogError(at, "frame is not a valid LogBatch");
  if (batch.sequence() != next_sequence_) {
    throw LogError(at, "batch sequence " + std::to_string(batch.sequence()) + ", expected " +
                           std::to_string(next_sequence_) + " (a batch is missing)");
  }
  ++next_sequence_;
  uint64_t last_icount = 0;
  for (const auto& r : batch.records()) {
    if (r.icount() < last_icount) throw LogError(at, "records out of icount order");
    last_icount = r.icount();
  }
  return batch;
}

}  // namespace tandem::hooks
