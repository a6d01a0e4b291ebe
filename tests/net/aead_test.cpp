#include "net/aead.h"

#include <gtest/gtest.h>

#include <vector>

namespace tandem::net {
namespace {

class AeadTest : public ::testing::TestWithParam<AeadCipher> {};

const std::string kKey(kAeadKeyBytes, '\x42');

TEST_P(AeadTest, SealThenOpenRoundTrips) {
  Aead aead(GetParam(), kKey);
  for (size_t size : {0u, 1u, 15u, 16u, 17u, 4096u, 1u << 20}) {
    std::string message(size, '\0');
    for (size_t i = 0; i < size; ++i) message[i] = static_cast<char>(i * 7 + 3);
    std::string buffer = message;
    aead.seal(size, "aad", buffer);
    ASSERT_EQ(buffer.size(), size + kAeadTagBytes);
    if (size >= 16) {
      EXPECT_NE(buffer.substr(0, size), message) << "encrypted";
    }
    std::string plain;
    ASSERT_TRUE(aead.open(size, "aad", buffer, plain));
    EXPECT_EQ(plain, message);
  }
}

TEST_P(AeadTest, AnyAlterationIsRefused) {
  Aead aead(GetParam(), kKey);
  std::string sealed = "acknowledge icount 1000";
  aead.seal(5, "", sealed);
  std::string plain;
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string bad = sealed;
    bad[i] ^= 0x01;
    EXPECT_FALSE(aead.open(5, "", bad, plain)) << "bit flipped at byte " << i;
    EXPECT_TRUE(plain.empty());
  }
  EXPECT_FALSE(aead.open(6, "", sealed, plain)) << "another sequence number";
  EXPECT_FALSE(aead.open(5, "x", sealed, plain)) << "other AAD";
  EXPECT_FALSE(aead.open(5, "", sealed.substr(0, sealed.size() - 1), plain)) << "truncated";
  EXPECT_FALSE(aead.open(5, "", "short", plain)) << "shorter than a tag";
  Aead other(GetParam(), std::string(kAeadKeyBytes, '\x43'));
  EXPECT_FALSE(other.open(5, "", sealed, plain)) << "another key";
  EXPECT_TRUE(aead.open(5, "", sealed, plain));
}

TEST_P(AeadTest, StreamRefusesReplayReorderAndInjection) {
  AeadSealer sealer(GetParam(), kKey);
  std::vector<std::string> frames;
  for (int i = 0; i < 4; ++i) {
    frames.push_back("frame " + std::to_string(i));
    sealer.seal(frames.back());
  }
  EXPECT_EQ(sealer.next_sequence(), 4u);
  std::string plain;
  {
    AeadOpener opener(GetParam(), kKey);
    EXPECT_TRUE(opener.open(frames[0], plain));
    EXPECT_EQ(plain, "frame 0");
    EXPECT_FALSE(opener.open(frames[0], plain)) << "replayed";
    EXPECT_TRUE(opener.failed());
    EXPECT_FALSE(opener.open(frames[1], plain)) << "a broken stream stays broken";
  }
  {
    AeadOpener opener(GetParam(), kKey);
    EXPECT_FALSE(opener.open(frames[1], plain)) << "reordered";
  }
  {
    AeadOpener opener(GetParam(), kKey);
    AeadSealer forger(GetParam(), std::string(kAeadKeyBytes, '\x01'));
    std::string forged = "Ack UINT64_MAX";
    forger.seal(forged);
    EXPECT_FALSE(opener.open(forged, plain)) << "injected under a key the attacker made up";
  }
}

TEST_P(AeadTest, RefusesAKeyOfTheWrongSize) {
  EXPECT_THROW(Aead(GetParam(), "short"), std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Ciphers, AeadTest, ::testing::Values(AeadCipher::kChaCha20Poly1305, AeadCipher::kAes256Gcm),
                         [](const auto& info) { return info.param == AeadCipher::kAes256Gcm ? "Aes256Gcm" : "ChaCha20Poly1305"; });

// Different ciphers under the same key and nonce give different messages: a sealed message
// of one does not open with the other.
TEST(Aead, CiphersAreNotInterchangeable) {
  Aead chacha(AeadCipher::kChaCha20Poly1305, kKey), gcm(AeadCipher::kAes256Gcm, kKey);
  std::string sealed = "hello";
  chacha.seal(0, "", sealed);
  std::string plain;
  EXPECT_FALSE(gcm.open(0, "", sealed, plain));
}

}  // namespace
}  // namespace tandem::net
