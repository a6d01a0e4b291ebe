#pragma once
// Handshake authentication (proto/replication.proto, docs/replication-link.md "Handshake").
// Each side proves it holds the pair's pre-shared key by an HMAC-SHA256 over the whole
// handshake as it saw it, and the label says which side proves:
//   proof = HMAC-SHA256(psk, "tandem-link-proof-v3" | direction u8 | protocol version u32 |
//                            vm_id | initiator's role u32, epoch u64, challenge, node_name |
//                            acceptor's role u32, epoch u64, challenge, node_name)
// Integers are little-endian and every string is preceded by its length (u32 LE), so the
// input is unambiguous. A proof is therefore good for one direction of one connection only:
// a proof an acceptor made on one connection proves nothing as an initiator's on another (the
// cross-node relay of issue 20), and a side's own challenge reflected back to it never gets it
// to compute the answer the other side needs. Both announcements are bound, so neither side's
// role, epoch or name can be altered in flight.
#include <cstdint>
#include <string>
#include <string_view>

#include "net/hmac.h"
#include "proto/replication.pb.h"

namespace tandem::replicator {

inline constexpr size_t kChallengeBytes = net::kChallengeBytes;
inline constexpr size_t kProofBytes = net::kMacBytes;

// Who makes the proof: the side that opened the connection, or the side that accepted it.
enum class ProofDirection : uint8_t { kFromInitiator = 1, kFromAcceptor = 2 };

// What one side announced in its Hello or HelloReply.
struct Announcement {
  wire::Role role = wire::ROLE_UNSPECIFIED;
  uint64_t epoch = 0;
  std::string_view challenge;
  std::string_view node_name;
};

// The handshake both proofs cover (views: the caller keeps the strings alive).
struct HandshakeTranscript {
  uint32_t protocol_version = 0;
  std::string_view vm_id;
  Announcement initiator;
  Announcement acceptor;
};

// kChallengeBytes fresh random bytes (net::random_bytes, OpenSSL RAND_bytes). Throws std::runtime_error if the
// generator fails: a handshake must never run on a predictable challenge.
std::string make_challenge();

std::string compute_proof(std::string_view psk, ProofDirection from, const HandshakeTranscript& transcript);

// Constant-time comparison (CRYPTO_memcmp); false when the sizes differ.
bool proofs_equal(std::string_view expected, std::string_view presented);

// The pairs of roles a link may join. Only a primary opens a link (protecting a secondary,
// or a fenced primary knocking at its old peer, which a live primary refuses with "resync").
// A secondary accepts only a primary; a primary accepts only a primary (to refuse it with a
// reason). Checked by both sides, the acceptor before it computes any proof.
bool role_pair_allowed(wire::Role initiator, wire::Role acceptor);

}  // namespace tandem::replicator
