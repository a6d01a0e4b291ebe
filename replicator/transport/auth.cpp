#include "replicator/transport/auth.h"

namespace tandem::replicator {

namespace {
constexpr std::string_view kProofLabel = "tandem-link-proof-v3";

void append_string(std::string& out, std::string_view text) {
  out += net::le_bytes(text.size(), 4);
  out += text;
}

void append_announcement(std::string& out, const Announcement& side) {
  out += net::le_bytes(static_cast<uint32_t>(side.role), 4);
  out += net::le_bytes(side.epoch, 8);
  append_string(out, side.challenge);
  append_string(out, side.node_name);
}
}  // namespace

std::string make_challenge() { return net::random_bytes(kChallengeBytes); }

std::string compute_proof(std::string_view psk, ProofDirection from, const HandshakeTranscript& t) {
  std::string fields = net::le_bytes(static_cast<uint8_t>(from), 1);
  fields += net::le_bytes(t.protocol_version, 4);
  append_string(fields, t.vm_id);
  append_announcement(fields, t.initiator);
  append_announcement(fields, t.acceptor);
  return net::labelled_mac(psk, kProofLabel, {fields});
}

bool proofs_equal(std::string_view expected, std::string_view presented) {
  return net::macs_equal(expected, presented);
}

bool role_pair_allowed(wire::Role initiator, wire::Role acceptor) {
  return initiator == wire::PRIMARY && (acceptor == wire::PRIMARY || acceptor == wire::SECONDARY);
}

}  // namespace tandem::replicator
