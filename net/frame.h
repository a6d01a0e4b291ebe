// The length+XXH3 frame, Tandem's one framing of a byte stream (the event-log file, the
// replication link, the second heartbeat path):
//   u32 LE payload length | u64 LE XXH3-64(payload) | payload
// A reader refuses, before parsing anything, a frame whose length is over its limit or whose
// checksum does not match.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message_lite.h>

namespace tandem::net {

inline constexpr size_t kFrameHeaderBytes = 12;
inline constexpr uint32_t kMaxFramePayload = 64u << 20;  // the event log's and the link's limit

using FrameHeader = std::array<uint8_t, kFrameHeaderBytes>;

// The header of a frame carrying `payload`.
FrameHeader frame_header(std::string_view payload);

struct FrameHeaderFields {
  uint32_t length = 0;
  uint64_t checksum = 0;
};
FrameHeaderFields read_frame_header(const uint8_t* header /* kFrameHeaderBytes */);
// True when `payload` is what the header announced (its length and its checksum).
bool frame_payload_ok(const FrameHeaderFields& header, std::string_view payload);

// Serialises `message` into a payload. Throws std::length_error naming `what` when the
// payload is over `max_payload`, std::runtime_error when protobuf cannot serialise it.
std::string serialize_payload(const google::protobuf::MessageLite& message, std::string_view what,
                              uint32_t max_payload = kMaxFramePayload);

// Header and payload in one string (for a file or a small message).
std::string encode_frame(std::string_view payload);
std::string encode_frame(const google::protobuf::MessageLite& message, std::string_view what,
                         uint32_t max_payload = kMaxFramePayload);

// Cuts frames out of a byte stream that arrives in arbitrary pieces.
class FrameReader {
 public:
  enum class Status { kFrame, kNeedMore, kError };

  explicit FrameReader(uint32_t max_payload = kMaxFramePayload) : max_payload_(max_payload) {}
  void set_max_payload(uint32_t max_payload) { max_payload_ = max_payload; }

  // Room to read into: at least `min_room` bytes, and enough for the whole frame whose header
  // has already arrived. Valid until the next call to any member.
  std::span<uint8_t> write_area(size_t min_room = 64 * 1024);
  // Records that `n` bytes were written into the last write_area().
  void commit(size_t n) { end_ += n; }
  // Copies `bytes` in (write_area + commit).
  void append(std::string_view bytes);

  // kFrame: `payload` is the next frame's payload (valid until the next call to any member).
  // kNeedMore: no complete frame yet. kError: `error` says why; the stream is unusable.
  Status next(std::string_view& payload, std::string& error);

  size_t buffered_bytes() const { return end_ - begin_; }

 private:
  uint32_t max_payload_;
  std::vector<uint8_t> buffer_;
  size_t begin_ = 0;  // first unconsumed byte
  size_t end_ = 0;    // one past the last received byte
};

}  // namespace tandem::net
