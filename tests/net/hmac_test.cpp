// net::labelled_mac and friends against RFC 4231's HMAC-SHA256 vectors.
#include "net/hmac.h"

#include <gtest/gtest.h>

#include "net/encoding.h"

namespace {

using namespace tandem::net;

TEST(Hmac, MatchesRfc4231TestCase2) {
  // Key "Jefe", data "what do ya want for nothing?", split between the label and the parts.
  const std::string mac = labelled_mac("Jefe", "what do ya ", {"want ", "for nothing?"});
  EXPECT_EQ(to_hex(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(mac.size(), kMacBytes);
  EXPECT_EQ(labelled_mac("Jefe", "what do ya want for nothing?", {}), mac);
}

TEST(Hmac, ConstantTimeComparison) {
  const std::string a = labelled_mac("key-key-key-key!", "label", {"x"});
  EXPECT_TRUE(macs_equal(a, a));
  std::string b = a;
  b[31] ^= 1;
  EXPECT_FALSE(macs_equal(a, b));
  EXPECT_FALSE(macs_equal(a, a.substr(0, 31)));
  EXPECT_FALSE(macs_equal("", ""));
}

TEST(Hmac, RandomBytesAndLittleEndianFields) {
  const std::string r1 = random_bytes(kChallengeBytes), r2 = random_bytes(kChallengeBytes);
  EXPECT_EQ(r1.size(), kChallengeBytes);
  EXPECT_NE(r1, r2);
  EXPECT_EQ(random_bytes(0), "");
  EXPECT_EQ(le_bytes(0x0102030405060708ull, 8), std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8));
  EXPECT_EQ(le_bytes(0x1234, 4), std::string("\x34\x12\x00\x00", 4));
}

}  // namespace
