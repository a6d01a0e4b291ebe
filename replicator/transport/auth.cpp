#include "replicator/transport/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

namespace tandem::replicator {

namespace {
constexpr std::string_view kProofLabel = "tandem-link-proof-v3";

void append_le(std::string& out, uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

void append_string(std::string& out, std::string_view text) {
  append_le(out, text.size(), 4);
  out += text;
}

void append_announcement(std::string& out, const Announcement& side) {
  append_le(out, static_cast<uint32_t>(side.role), 4);
  append_le(out, side.epoch, 8);
  append_string(out, side.challenge);
  append_string(out, side.node_name);
}
}  // namespace

std::string make_challenge() {
  std::string challenge(kChallengeBytes, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(challenge.data()), static_cast<int>(challenge.size())) != 1) {
    throw std::runtime_error("link: the random generator failed (RAND_bytes)");
  }
  return challenge;
}

std::string compute_proof(std::string_view psk, ProofDirection from, const HandshakeTranscript& t) {
  std::string input;
  input.reserve(kProofLabel.size() + 64 + t.vm_id.size() + t.initiator.challenge.size() +
                t.initiator.node_name.size() + t.acceptor.challenge.size() + t.acceptor.node_name.size());
  input += kProofLabel;
  append_le(input, static_cast<uint8_t>(from), 1);
  append_le(input, t.protocol_version, 4);
  append_string(input, t.vm_id);
  append_announcement(input, t.initiator);
  append_announcement(input, t.acceptor);

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

bool role_pair_allowed(wire::Role initiator, wire::Role acceptor) {
  return initiator == wire::PRIMARY && (acceptor == wire::PRIMARY || acceptor == wire::SECONDARY);
}

}  // namespace tandem::replicator
