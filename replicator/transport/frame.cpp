#include "replicator/transport/frame.h"

#include <xxhash.h>

#include <cstring>
#include <stdexcept>

namespace tandem::replicator {

namespace {

void put_le(uint8_t* out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<uint8_t>(value >> (8 * i));
}

uint64_t get_le(const uint8_t* in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | in[i];
  return value;
}

// A buffer grown for one big frame is given back once it is empty again.
constexpr size_t kKeepBufferBytes = 4u << 20;

}  // namespace

OutgoingFrame encode_link_frame(const google::protobuf::MessageLite& message) {
  OutgoingFrame frame;
  if (!message.SerializeToString(&frame.payload)) throw std::runtime_error("link: cannot serialise message");
  if (frame.payload.size() > kMaxFramePayload) {
    throw std::length_error("link: message of " + std::to_string(frame.payload.size()) +
                            " bytes exceeds the " + std::to_string(kMaxFramePayload) + "-byte frame limit");
  }
  put_le(frame.header.data(), frame.payload.size(), 4);
  put_le(frame.header.data() + 4, XXH3_64bits(frame.payload.data(), frame.payload.size()), 8);
  return frame;
}

std::span<uint8_t> FrameReader::write_area(size_t min_room) {
  if (begin_ == end_) {
    begin_ = end_ = 0;
    if (buffer_.size() > kKeepBufferBytes) {
      buffer_.clear();
      buffer_.shrink_to_fit();
    }
  } else if (begin_ > 0) {
    // Only after frames were consumed, so a large frame arriving piecewise is moved at most once.
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  size_t wanted = end_ + min_room;
  if (end_ >= kFrameHeaderBytes) {
    uint64_t length = get_le(buffer_.data(), 4);
    // An over-limit length is reported by next(); never allocate for it.
    if (length <= max_payload_) wanted = std::max<size_t>(wanted, kFrameHeaderBytes + length);
  }
  if (buffer_.size() < wanted) buffer_.resize(wanted);
  return {buffer_.data() + end_, buffer_.size() - end_};
}

FrameReader::Status FrameReader::next(std::string_view& payload, std::string& error) {
  size_t available = end_ - begin_;
  if (available < kFrameHeaderBytes) return Status::kNeedMore;
  const uint8_t* header = buffer_.data() + begin_;
  uint64_t length = get_le(header, 4);
  if (length > max_payload_) {
    error = "frame length " + std::to_string(length) + " exceeds the limit of " + std::to_string(max_payload_);
    return Status::kError;
  }
  if (available < kFrameHeaderBytes + length) return Status::kNeedMore;
  const uint8_t* body = header + kFrameHeaderBytes;
  if (XXH3_64bits(body, length) != get_le(header + 4, 8)) {
    error = "frame checksum mismatch (" + std::to_string(length) + "-byte payload)";
    return Status::kError;
  }
  payload = std::string_view(reinterpret_cast<const char*>(body), length);
  begin_ += kFrameHeaderBytes + length;
  return Status::kFrame;
}

}  // namespace tandem::replicator
