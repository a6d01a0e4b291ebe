#include "replicator/transport/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace tandem::replicator {

namespace {
constexpr std::string_view kAuthLabel = "tandem-auth-v1";

void append_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}
}  // namespace

std::string make_challenge() {
  std::string challenge(kChallengeBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(challenge.data()), static_cast<int>(challenge.size())) != 1) {
    throw std::runtime_error("link: the random generator failed (RAND_bytes)");
  }
  return challenge;
}

std::string compute_proof(std::string_view psk, wire::Role own_role, std::string_view peer_challenge,
                          std::string_view vm_id, uint64_t own_epoch) {
  std::string input;
  input.reserve(kAuthLabel.size() + 4 + peer_challenge.size() + vm_id.size() + 8);
  input += kAuthLabel;
  append_le(input, static_cast<uint32_t>(own_role), 4);
  input += peer_challenge;
  input += vm_id;
  append_le(input, own_epoch, 8);

  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_size = 0;
  if (HMAC(EVP_sha256(), psk.data(), static_cast<int>(psk.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest, &digest_size) == nullptr ||
      digest_size != kProofBytes) {
    throw std::runtime_error("link: HMAC-SHA256 failed");
  }
  return std::string(reinterpret_cast<const char*>(digest), digest_size);
}

bool proofs_equal(std::string_view expected, std::string_view presented) {
  if (expected.size() != presented.size() || expected.empty()) return false;
  return CRYPTO_memcmp(expected.data(), presented.data(), expected.size()) == 0;
}

}  // namespace tandem::replicator
