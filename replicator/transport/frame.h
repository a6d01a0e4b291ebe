#pragma once
// Link framing: u32 LE payload length | u64 LE XXH3-64(payload) | payload, the event-log
// file's frame (vmm-hooks/event_log.h). FrameReader cuts frames out of a byte stream that
// arrives in arbitrary pieces and refuses, before parsing anything, a frame whose length is
// over the limit or whose checksum does not match.
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message_lite.h>

namespace tandem::replicator {

inline constexpr size_t kFrameHeaderBytes = 12;
inline constexpr uint32_t kMaxFramePayload = 64u << 20;  // the event log's limit

// One frame ready to write: the header and the payload kept apart so a large payload is
// never copied again (they go out together in one gather write).
struct OutgoingFrame {
  std::array<uint8_t, kFrameHeaderBytes> header{};
  std::string payload;
  size_t written = 0;  // bytes already on the wire (a direct write the socket cut short)
  size_t size() const { return header.size() + payload.size(); }
};

// Serialises `message`. Throws std::length_error when the payload is over kMaxFramePayload.
OutgoingFrame encode_link_frame(const google::protobuf::MessageLite& message);

class FrameReader {
 public:
  enum class Status { kFrame, kNeedMore, kError };

  explicit FrameReader(uint32_t max_payload) : max_payload_(max_payload) {}
  void set_max_payload(uint32_t max_payload) { max_payload_ = max_payload; }

  // Room to read into: at least `min_room` bytes, and enough for the whole frame whose header
  // has already arrived. Valid until the next call to any member.
  std::span<uint8_t> write_area(size_t min_room = 64 * 1024);
  // Records that `n` bytes were written into the last write_area().
  void commit(size_t n) { end_ += n; }

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

}  // namespace tandem::replicator
