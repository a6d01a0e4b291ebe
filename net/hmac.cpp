#include "net/hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace tandem::net {

std::string labelled_mac(std::string_view key, std::string_view label, std::initializer_list<std::string_view> parts) {
  std::string input;
  size_t size = label.size();
  for (auto part : parts) size += part.size();
  input.reserve(size);
  input += label;
  for (auto part : parts) input += part;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(input.data()),
           input.size(), digest, &digest_size) == nullptr ||
      digest_size != kMacBytes) {
    throw std::runtime_error(std::string(label) + ": HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(digest), digest_size);
}

bool macs_equal(std::string_view expected, std::string_view presented) {
  if (expected.size() != presented.size() || expected.empty()) return false;
  return CRYPTO_memcmp(expected.data(), presented.data(), expected.size()) == 0;
}

std::string random_bytes(size_t count) {
  std::string out(count, '\0');
  if (count > 0 && RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(count)) != 1)
    throw std::runtime_error("the random generator failed (OpenSSL RAND_bytes)");
  return out;
}

std::string le_bytes(uint64_t value, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
  return out;
}

}  // namespace tandem::net
