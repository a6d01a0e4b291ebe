#include "replicator/transport/auth.h"

#include "net/hkdf.h"

namespace tandem::replicator {

namespace {
constexpr std::string_view kProofLabel = "tandem-link-proof-v4";
constexpr std::string_view kFrameKeyLabel = "tandem-link-frames-v4 ";

void append_string(std::string& out, std::string_view text) {
  out += net::le_bytes(text.size(), 4);
  out += text;
}

void append_announcement(std::string& out, const Announcement& side) {
  out += net::le_bytes(static_cast<uint32_t>(side.role), 4);
  out += net::le_bytes(side.epoch, 8);
  append_string(out, side.challenge);
  append_string(out, side.node_name);
  out += net::le_bytes(side.cleartext ? 1 : 0, 1);
}

std::string transcript_fields(const HandshakeTranscript& t) {
  std::string fields = net::le_bytes(t.protocol_version, 4);
  append_string(fields, t.vm_id);
  append_announcement(fields, t.initiator);
  append_announcement(fields, t.acceptor);
  return fields;
}
}  // namespace

std::string make_challenge() { return net::random_bytes(kChallengeBytes); }

std::string link_key(std::string_view psk, std::string_view vm_id) {
  return net::derive_purpose_key(psk, net::KeyPurpose::kLink, vm_id);
}

std::string compute_proof(std::string_view key, ProofDirection from, const HandshakeTranscript& t) {
  return net::labelled_mac(key, kProofLabel, {net::le_bytes(static_cast<uint8_t>(from), 1), transcript_fields(t)});
}

FrameKeys derive_frame_keys(std::string_view key, const HandshakeTranscript& t) {
  const std::string salt = std::string(t.initiator.challenge) + std::string(t.acceptor.challenge);
  const std::string fields = transcript_fields(t);
  auto derive = [&](std::string_view direction) {
    return net::hkdf_sha256(key, salt, std::string(kFrameKeyLabel) + std::string(direction) + fields,
                            net::kAeadKeyBytes);
  };
  return {derive("initiator->acceptor"), derive("acceptor->initiator")};
}

bool proofs_equal(std::string_view expected, std::string_view presented) {
  return net::macs_equal(expected, presented);
}

bool role_pair_allowed(wire::Role initiator, wire::Role acceptor) {
  return initiator == wire::PRIMARY && (acceptor == wire::PRIMARY || acceptor == wire::SECONDARY);
}

}  // namespace tandem::replicator
