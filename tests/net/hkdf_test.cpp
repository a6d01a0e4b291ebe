#include "net/hkdf.h"

#include <gtest/gtest.h>

#include <set>

namespace tandem::net {
namespace {

std::string unhex(std::string_view hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

std::string tohex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}

// RFC 5869, appendix A, test case 1.
TEST(Hkdf, MatchesRfc5869TestCase1) {
  const std::string okm = hkdf_sha256(std::string(22, '\x0b'), unhex("000102030405060708090a0b0c"),
                                      unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
  EXPECT_EQ(tohex(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
}

TEST(Hkdf, RefusesEmptyKeyAndBadLengths) {
  EXPECT_THROW(hkdf_sha256("", "salt", "info", 32), std::invalid_argument);
  EXPECT_THROW(hkdf_sha256("key", "salt", "info", 0), std::invalid_argument);
  EXPECT_THROW(hkdf_sha256("key", "salt", "info", 255 * 32 + 1), std::invalid_argument);
}

TEST(PurposeKeys, DifferPerPurposeAndPerVmAndFromThePsk) {
  const std::string psk = "0123456789abcdef0123456789abcdef";
  std::set<std::string> keys;
  for (auto purpose : {KeyPurpose::kLink, KeyPurpose::kHeartbeat, KeyPurpose::kWitness}) {
    for (std::string vm : {"vm-a", "vm-b", ""}) {
      const std::string key = derive_purpose_key(psk, purpose, vm);
      EXPECT_EQ(key.size(), kDerivedKeyBytes);
      EXPECT_EQ(key, derive_purpose_key(psk, purpose, vm)) << "deterministic";
      EXPECT_NE(key.find_first_not_of('\0'), std::string::npos);
      keys.insert(key);
    }
  }
  EXPECT_EQ(keys.size(), 9u) << "every (purpose, vm) pair has its own key";
  EXPECT_EQ(keys.count(psk.substr(0, kDerivedKeyBytes)), 0u);
  EXPECT_NE(derive_purpose_key(psk, KeyPurpose::kLink, "vm-a"),
            derive_purpose_key(psk + "x", KeyPurpose::kLink, "vm-a"));
  EXPECT_THROW(derive_purpose_key("", KeyPurpose::kLink, "vm"), std::invalid_argument);
}

// The label and the vm id are separated: purpose "link" with vm "heartbeat..." cannot collide
// with another purpose's key.
TEST(PurposeKeys, LabelAndVmIdAreUnambiguous) {
  const std::string psk(32, 'k');
  EXPECT_NE(derive_purpose_key(psk, KeyPurpose::kLink, "x"), hkdf_sha256(psk, "tandem-purpose-key-v1", "linkx", 32));
  EXPECT_EQ(derive_purpose_key(psk, KeyPurpose::kLink, "x"),
            hkdf_sha256(psk, "tandem-purpose-key-v1", std::string("link\0x", 6), 32));
}

}  // namespace
}  // namespace tandem::net
