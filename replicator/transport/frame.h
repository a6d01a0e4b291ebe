#pragma once
// Link frames: the length+XXH3 frame of net/frame.h (the event-log file's frame),
//   u32 LE payload length | u64 LE XXH3-64(payload) | payload
// read with net::FrameReader, which refuses an over-limit length or a bad checksum before
// anything is parsed. OutgoingFrame keeps a frame's header and payload apart so that a large
// payload is never copied again (both go out in one gather write).
#include <cstdint>
#include <string>

#include <google/protobuf/message_lite.h>

#include "net/frame.h"

namespace tandem::replicator {

using net::FrameReader;
using net::kFrameHeaderBytes;
using net::kMaxFramePayload;

struct OutgoingFrame {
  net::FrameHeader header{};
  std::string payload;
  size_t written = 0;  // bytes already on the wire (a direct write the socket cut short)
  size_t size() const { return header.size() + payload.size(); }
};

// Serialises `message`. Throws std::length_error when the payload is over kMaxFramePayload.
OutgoingFrame encode_link_frame(const google::protobuf::MessageLite& message);

}  // namespace tandem::replicator
