#include "fencing/witness_protocol.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace tandem::fencing::witness {

namespace {
constexpr std::string_view kMacLabel = "tandem-witness-v1";
}

std::string compute_mac(std::string_view psk, Direction direction, std::string_view body) {
  std::string input;
  input.reserve(kMacLabel.size() + 1 + body.size());
  input += kMacLabel;
  input.push_back(static_cast<char>(direction));
  input += body;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (HMAC(EVP_sha256(), psk.data(), static_cast<int>(psk.size()), reinterpret_cast<const unsigned char*>(input.data()),
           input.size(), digest, &digest_size) == nullptr ||
      digest_size != kMacBytes) {
    throw std::runtime_error("witness: HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(digest), digest_size);
}

bool mac_matches(std::string_view psk, Direction direction, std::string_view body, std::string_view mac) {
  if (mac.size() != kMacBytes) return false;
  const std::string expected = compute_mac(psk, direction, body);
  return CRYPTO_memcmp(expected.data(), mac.data(), kMacBytes) == 0;
}

std::string seal(std::string_view psk, Direction direction, std::string_view body) {
  if (body.empty() || body.size() > kMaxWitnessBody) {
    throw std::length_error("witness: message body of " + std::to_string(body.size()) + " bytes (limit " +
                            std::to_string(kMaxWitnessBody) + ")");
  }
  const auto size = static_cast<uint32_t>(body.size());
  std::string frame;
  frame.reserve(kHeaderBytes + body.size() + kMacBytes);
  for (int shift = 24; shift >= 0; shift -= 8) frame.push_back(static_cast<char>((size >> shift) & 0xff));
  frame += body;
  frame += compute_mac(psk, direction, body);
  return frame;
}

uint32_t body_length(const std::array<uint8_t, kHeaderBytes>& header) {
  const uint32_t size = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) | (uint32_t{header[2]} << 8) |
                        uint32_t{header[3]};
  return size > kMaxWitnessBody ? 0 : size;
}

std::string random_nonce() {
  std::string nonce(kNonceBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(nonce.data()), static_cast<int>(nonce.size())) != 1) {
    throw std::runtime_error("witness: the random generator failed (RAND_bytes)");
  }
  return nonce;
}

}  // namespace tandem::fencing::witness
