// Link framing and handshake proofs, without sockets.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <random>

#include "replicator/transport/auth.h"
#include "replicator/transport/frame.h"
#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using testing::frame_bytes;
using testing::heartbeat;
using testing::raw_frame;

void feed(FrameReader& reader, std::string_view bytes) {
  auto area = reader.write_area(bytes.size());
  ASSERT_GE(area.size(), bytes.size());
  std::memcpy(area.data(), bytes.data(), bytes.size());
  reader.commit(bytes.size());
}

TEST(FrameReader, FramesFedByteByByteComeOutWholeAndInOrder) {
  std::string stream;
  for (uint64_t i = 0; i < 50; ++i) stream += frame_bytes(heartbeat(i, 7));
  FrameReader reader(kMaxFramePayload);
  std::vector<uint64_t> seen;
  for (char byte : stream) {
    feed(reader, std::string_view(&byte, 1));
    std::string_view payload;
    std::string error;
    while (true) {
      auto status = reader.next(payload, error);
      ASSERT_NE(status, FrameReader::Status::kError) << error;
      if (status == FrameReader::Status::kNeedMore) break;
      wire::Envelope envelope;
      ASSERT_TRUE(envelope.ParseFromArray(payload.data(), static_cast<int>(payload.size())));
      EXPECT_EQ(envelope.epoch(), 7u);
      seen.push_back(envelope.heartbeat().icount());
    }
  }
  ASSERT_EQ(seen.size(), 50u);
  for (uint64_t i = 0; i < 50; ++i) EXPECT_EQ(seen[i], i);
  EXPECT_EQ(reader.buffered_bytes(), 0u);
}

TEST(FrameReader, LargeFrameInChunksAndEmptyPayload) {
  std::string big(5 << 20, '\0');
  std::mt19937_64 random(42);
  for (auto& c : big) c = static_cast<char>(random());
  std::string stream = raw_frame(big) + raw_frame("");
  FrameReader reader(kMaxFramePayload);
  std::string_view payload;
  std::string error;
  for (size_t at = 0; at < stream.size(); at += 100000) {
    feed(reader, std::string_view(stream).substr(at, 100000));
  }
  ASSERT_EQ(reader.next(payload, error), FrameReader::Status::kFrame) << error;
  EXPECT_EQ(payload.size(), big.size());
  EXPECT_TRUE(payload == big);
  ASSERT_EQ(reader.next(payload, error), FrameReader::Status::kFrame) << error;
  EXPECT_TRUE(payload.empty());
  EXPECT_EQ(reader.next(payload, error), FrameReader::Status::kNeedMore);
}

TEST(FrameReader, LengthOverTheLimitIsAnErrorBeforeThePayloadArrives) {
  FrameReader reader(1024);
  std::string frame = raw_frame(std::string(1025, 'x'));
  feed(reader, std::string_view(frame).substr(0, kFrameHeaderBytes));  // the header alone suffices
  std::string_view payload;
  std::string error;
  EXPECT_EQ(reader.next(payload, error), FrameReader::Status::kError);
  EXPECT_NE(error.find("exceeds the limit"), std::string::npos) << error;
}

TEST(FrameReader, AbsurdLengthNeverAllocates) {
  FrameReader reader(kMaxFramePayload);
  feed(reader, std::string("\xff\xff\xff\xff", 4) + std::string(8, '\0'));
  // write_area must not try to make room for a 4 GiB frame.
  EXPECT_LT(reader.write_area(16).size(), size_t{1} << 20);
  std::string_view payload;
  std::string error;
  EXPECT_EQ(reader.next(payload, error), FrameReader::Status::kError);
}

TEST(FrameReader, FlippedBitIsAChecksumError) {
  std::string frame = frame_bytes(heartbeat(1, 1));
  for (size_t bit = kFrameHeaderBytes * 8; bit < frame.size() * 8; ++bit) {
    std::string corrupt = frame;
    corrupt[bit / 8] = static_cast<char>(corrupt[bit / 8] ^ (1 << (bit % 8)));
    FrameReader reader(kMaxFramePayload);
    feed(reader, corrupt);
    std::string_view payload;
    std::string error;
    ASSERT_EQ(reader.next(payload, error), FrameReader::Status::kError) << "bit " << bit;
    EXPECT_NE(error.find("checksum"), std::string::npos);
  }
}

TEST(FrameEncoding, HeaderIsLengthAndXxh3LittleEndian) {
  auto envelope = heartbeat(99, 3);
  auto frame = encode_link_frame(envelope);
  std::string payload = envelope.SerializeAsString();
  EXPECT_EQ(frame.payload, payload);
  uint32_t length = 0;
  uint64_t hash = 0;
  for (int i = 3; i >= 0; --i) length = (length << 8) | frame.header[i];
  for (int i = 7; i >= 0; --i) hash = (hash << 8) | frame.header[4 + i];
  EXPECT_EQ(length, payload.size());
  EXPECT_EQ(hash, XXH3_64bits(payload.data(), payload.size()));
}

TEST(FrameEncoding, OversizeMessageIsRefused) {
  wire::Envelope envelope;
  envelope.mutable_sync_chunk()->set_checkpoint(std::string(kMaxFramePayload + 1, 'x'));
  EXPECT_THROW(encode_link_frame(envelope), std::length_error);
}

TEST(Auth, ChallengesAreFreshAndFullSize) {
  auto a = make_challenge();
  auto b = make_challenge();
  EXPECT_EQ(a.size(), kChallengeBytes);
  EXPECT_NE(a, b);
}

const std::string kInitiatorChallenge(kChallengeBytes, 'i');
const std::string kAcceptorChallenge(kChallengeBytes, 'a');

HandshakeTranscript sample_transcript() {
  return {kProtocolVersion, "vm", {wire::PRIMARY, 4, kInitiatorChallenge, "node-a"},
          {wire::SECONDARY, 3, kAcceptorChallenge, "node-b"}};
}

TEST(Auth, ProofBindsKeyDirectionVersionVmIdAndBothAnnouncements) {
  const auto t = sample_transcript();
  const auto base = compute_proof(testing::kPsk, ProofDirection::kFromAcceptor, t);
  EXPECT_EQ(base.size(), kProofBytes);
  EXPECT_EQ(base, compute_proof(testing::kPsk, ProofDirection::kFromAcceptor, sample_transcript()));
  EXPECT_NE(base, compute_proof(testing::kPsk + "x", ProofDirection::kFromAcceptor, t));
  // The direction: an acceptor's proof is never an initiator's (the relay and reflection).
  EXPECT_NE(base, compute_proof(testing::kPsk, ProofDirection::kFromInitiator, t));
  const std::string other_challenge(kChallengeBytes, 'x');
  std::vector<HandshakeTranscript> changed(11, t);
  changed[0].protocol_version = 2;
  changed[1].vm_id = "vm2";
  changed[2].initiator.role = wire::SECONDARY;
  changed[3].initiator.epoch = 5;
  changed[4].initiator.challenge = other_challenge;
  changed[5].initiator.node_name = "node-x";
  changed[6].acceptor.role = wire::PRIMARY;
  changed[7].acceptor.epoch = 5;
  changed[8].acceptor.challenge = other_challenge;
  changed[9].acceptor.node_name = "node-x";
  changed[10].initiator = t.acceptor;  // the two sides swapped
  changed[10].acceptor = t.initiator;
  for (size_t i = 0; i < changed.size(); ++i) {
    EXPECT_NE(base, compute_proof(testing::kPsk, ProofDirection::kFromAcceptor, changed[i])) << "change " << i;
  }
  // Lengths are encoded: a byte moved from one field to the next changes the proof.
  auto shifted_a = t;
  shifted_a.initiator.node_name = "node-ab";
  shifted_a.acceptor.challenge = kAcceptorChallenge;
  auto shifted_b = t;
  shifted_b.initiator.node_name = "node-a";
  const std::string longer_challenge = "b" + kAcceptorChallenge;
  shifted_b.acceptor.challenge = longer_challenge;
  EXPECT_NE(compute_proof(testing::kPsk, ProofDirection::kFromAcceptor, shifted_a),
            compute_proof(testing::kPsk, ProofDirection::kFromAcceptor, shifted_b));
}

TEST(Auth, RolePairs) {
  EXPECT_TRUE(role_pair_allowed(wire::PRIMARY, wire::SECONDARY));  // protect
  EXPECT_TRUE(role_pair_allowed(wire::PRIMARY, wire::PRIMARY));    // a fenced primary's rejoin
  EXPECT_FALSE(role_pair_allowed(wire::SECONDARY, wire::SECONDARY));
  EXPECT_FALSE(role_pair_allowed(wire::SECONDARY, wire::PRIMARY));
  EXPECT_FALSE(role_pair_allowed(wire::ROLE_UNSPECIFIED, wire::SECONDARY));
  EXPECT_FALSE(role_pair_allowed(wire::PRIMARY, wire::ROLE_UNSPECIFIED));
}

TEST(Auth, ProofsCompareExactly) {
  auto proof = compute_proof(testing::kPsk, ProofDirection::kFromInitiator, sample_transcript());
  EXPECT_TRUE(proofs_equal(proof, proof));
  auto flipped = proof;
  flipped[31] = static_cast<char>(flipped[31] ^ 1);
  EXPECT_FALSE(proofs_equal(proof, flipped));
  EXPECT_FALSE(proofs_equal(proof, proof.substr(0, 16)));
  EXPECT_FALSE(proofs_equal(proof, ""));
  EXPECT_FALSE(proofs_equal("", ""));
}

}  // namespace
}  // namespace tandem::replicator
