#include "net/frame.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace tandem::net {

namespace {

uint64_t get_le(const uint8_t* in, int bytes) {
  uint64_t value = 0;
  for (int i = bytes - 1; i >= 0; --i) value = (value << 8) | in[i];
  return value;
}

// A buffer grown for one big frame is given back once it is empty again.
constexpr size_t kKeepBufferBytes = 4u << 20;

}  // namespace

FrameHeader frame_header(std::string_view payload) {
  FrameHeader header{};
  const uint64_t length = payload.size();
  const uint64_t checksum = XXH3_64bits(payload.data(), payload.size());
  for (int i = 0; i < 4; ++i) header[i] = static_cast<uint8_t>(length >> (8 * i));
  for (int i = 0; i < 8; ++i) header[4 + i] = static_cast<uint8_t>(checksum >> (8 * i));
  return header;
}

FrameHeaderFields read_frame_header(const uint8_t* header) {
  return {static_cast<uint32_t>(get_le(header, 4)), get_le(header + 4, 8)};
}

bool frame_payload_ok(const FrameHeaderFields& header, std::string_view payload) {
  return payload.size() == header.length && XXH3_64bits(payload.data(), payload.size()) == header.checksum;
}

std::string serialize_payload(const google::protobuf::MessageLite& message, std::string_view what,
                              uint32_t max_payload) {
  std::string payload;
  if (!message.SerializeToString(&payload)) throw std::runtime_error(std::string(what) + ": cannot serialise message");
  if (payload.size() > max_payload) {
    throw std::length_error(std::string(what) + ": message of " + std::to_string(payload.size()) +
                            " bytes exceeds the " + std::to_string(max_payload) + "-byte frame limit");
  }
  return payload;
}

std::string encode_frame(std::string_view payload) {
  const FrameHeader header = frame_header(payload);
  std::string frame;
  frame.reserve(header.size() + payload.size());
  frame.append(reinterpret_cast<const char*>(header.data()), header.size());
  frame += payload;
  return frame;
}

std::string encode_frame(const google::protobuf::MessageLite& message, std::string_view what, uint32_t max_payload) {
  return encode_frame(serialize_payload(message, what, max_payload));
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
    const uint64_t length = get_le(buffer_.data(), 4);
    // An over-limit length is reported by next(); never allocate for it.
    if (length <= max_payload_) wanted = std::max<size_t>(wanted, kFrameHeaderBytes + length);
  }
  if (buffer_.size() < wanted) buffer_.resize(wanted);
  return {buffer_.data() + end_, buffer_.size() - end_};
}

void FrameReader::append(std::string_view bytes) {
  const auto area = write_area(bytes.size());
  std::memcpy(area.data(), bytes.data(), bytes.size());
  commit(bytes.size());
}

FrameReader::Status FrameReader::next(std::string_view& payload, std::string& error) {
  const size_t available = end_ - begin_;
  if (available < kFrameHeaderBytes) return Status::kNeedMore;
  const FrameHeaderFields header = read_frame_header(buffer_.data() + begin_);
  if (header.length > max_payload_) {
    error = "frame length " + std::to_string(header.length) + " exceeds the limit of " + std::to_string(max_payload_);
    return Status::kError;
  }
  if (available < kFrameHeaderBytes + header.length) return Status::kNeedMore;
  const std::string_view body(reinterpret_cast<const char*>(buffer_.data() + begin_ + kFrameHeaderBytes),
                              header.length);
  if (!frame_payload_ok(header, body)) {
    error = "frame checksum mismatch (" + std::to_string(header.length) + "-byte payload)";
    return Status::kError;
  }
  payload = body;
  begin_ += kFrameHeaderBytes + header.length;
  return Status::kFrame;
}

}  // namespace tandem::net
