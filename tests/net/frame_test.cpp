// The length+XXH3 frame: the exact bytes of a header, a stream cut at every byte boundary,
// and refusals (over the limit before any allocation, a checksum mismatch).
#include "net/frame.h"

#include <xxhash.h>

#include <gtest/gtest.h>

#include "proto/fencing.pb.h"

namespace {

using namespace tandem::net;

TEST(Frame, HeaderIsLengthThenXxh3LittleEndian) {
  const std::string payload = "hello";
  const std::string frame = encode_frame(payload);
  ASSERT_EQ(frame.size(), kFrameHeaderBytes + payload.size());
  EXPECT_EQ(frame.substr(0, 4), std::string("\x05\x00\x00\x00", 4));
  const uint64_t checksum = XXH3_64bits(payload.data(), payload.size());
  for (int i = 0; i < 8; ++i) EXPECT_EQ(static_cast<uint8_t>(frame[4 + i]), static_cast<uint8_t>(checksum >> (8 * i)));
  EXPECT_EQ(frame.substr(kFrameHeaderBytes), payload);
  const auto fields = read_frame_header(reinterpret_cast<const uint8_t*>(frame.data()));
  EXPECT_EQ(fields.length, 5u);
  EXPECT_EQ(fields.checksum, checksum);
  EXPECT_TRUE(frame_payload_ok(fields, payload));
  EXPECT_FALSE(frame_payload_ok(fields, "hellO"));
  EXPECT_FALSE(frame_payload_ok(fields, "hell"));
}

TEST(Frame, MessagesAndTheirLimit) {
  tandem::fencing::wire::WitnessRequest request;
  request.set_vm_id("kv");
  request.set_epoch(7);
  const std::string frame = encode_frame(request, "test");
  FrameReader reader;
  reader.append(frame);
  std::string_view payload;
  std::string error;
  ASSERT_EQ(reader.next(payload, error), FrameReader::Status::kFrame) << error;
  tandem::fencing::wire::WitnessRequest back;
  ASSERT_TRUE(back.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
  EXPECT_EQ(back.epoch(), 7u);
  request.set_node(std::string(100, 'n'));
  try {
    encode_frame(request, "heartbeat", 64);
    FAIL() << "expected std::length_error";
  } catch (const std::length_error& e) {
    EXPECT_NE(std::string(e.what()).find("heartbeat: message of"), std::string::npos) << e.what();
  }
}

TEST(Frame, ReaderCutsAStreamArrivingByteByByte) {
  std::string stream;
  for (int i = 0; i < 5; ++i) stream += encode_frame(std::string(static_cast<size_t>(i * 100), static_cast<char>('a' + i)));
  FrameReader reader(1000);
  std::vector<std::string> got;
  for (char c : stream) {
    reader.append(std::string_view(&c, 1));
    std::string_view payload;
    std::string error;
    FrameReader::Status status;
    while ((status = reader.next(payload, error)) == FrameReader::Status::kFrame) got.emplace_back(payload);
    ASSERT_EQ(status, FrameReader::Status::kNeedMore) << error;
  }
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(got[i], std::string(static_cast<size_t>(i * 100), static_cast<char>('a' + i)));
  EXPECT_EQ(reader.buffered_bytes(), 0u);
}

TEST(Frame, ReaderRefusesOversizeAndCorruptFrames) {
  FrameReader reader(16);
  std::string big = encode_frame(std::string(17, 'x'));
  reader.append(big.substr(0, kFrameHeaderBytes));
  // Room is asked for the announced frame only when it is within the limit.
  EXPECT_LT(reader.write_area(1).size(), 1000u);
  std::string_view payload;
  std::string error;
  EXPECT_EQ(reader.next(payload, error), FrameReader::Status::kError);
  EXPECT_NE(error.find("exceeds the limit of 16"), std::string::npos) << error;

  FrameReader second(1000);
  std::string corrupt = encode_frame("payload");
  corrupt.back() ^= 1;
  second.append(corrupt);
  EXPECT_EQ(second.next(payload, error), FrameReader::Status::kError);
  EXPECT_NE(error.find("checksum mismatch"), std::string::npos) << error;
}

}  // namespace
