// net hex and base64 (OpenSSL): RFC 4648 vectors, round trips, strict decoding.
#include "net/encoding.h"

#include <gtest/gtest.h>

namespace {

using namespace tandem::net;

TEST(Encoding, Hex) {
  EXPECT_EQ(to_hex(std::string("\x00\x01\xab\xff", 4)), "0001abff");
  EXPECT_EQ(from_hex("0001ABff"), std::string("\x00\x01\xab\xff", 4));
  EXPECT_EQ(from_hex(""), "");
  EXPECT_EQ(from_hex("abc"), std::nullopt);
  EXPECT_EQ(from_hex("zz"), std::nullopt);
}

TEST(Encoding, Base64Rfc4648Vectors) {
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                          {"foo", "Zm9v"}, {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                                          {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, coded] : vectors) {
    EXPECT_EQ(base64_encode(plain), coded) << plain;
    EXPECT_EQ(base64_decode(coded), std::string(plain)) << coded;
  }
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
  EXPECT_EQ(base64_encode("/tandem/kv/leader"), "L3RhbmRlbS9rdi9sZWFkZXI=");
}

TEST(Encoding, Base64RefusesWhatIsNotStrictBase64) {
  for (const char* bad : {"Zg=", "Zg", "Z===", "Zg=a", "=Zg=", "Zm9v Yg==", "Zm9v\nYg==", "Zm*v", " Zm9v"})
    EXPECT_EQ(base64_decode(bad), std::nullopt) << bad;
}

}  // namespace
