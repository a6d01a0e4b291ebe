#pragma once
// Handshake authentication and the frame keys (proto/replication.proto,
// docs/replication-link.md "Handshake", docs/security.md). Nothing here uses the pair's PSK
// itself: the link key is the PSK's purpose key for the link and this vm (net/hkdf.h),
//   link key = HKDF-SHA256(psk, "tandem-purpose-key-v1", "link" | 0 | vm_id)
// Each side proves it holds it by an HMAC-SHA256 over the whole handshake as it saw it, and
// the label says which side proves:
//   proof = HMAC-SHA256(link key, "tandem-link-proof-v4" | direction u8 | protocol version u32 |
//                       vm_id | initiator's role u32, epoch u64, challenge, node_name, cleartext u8 |
//                       acceptor's role u32, epoch u64, challenge, node_name, cleartext u8)
// Integers are little-endian and every string is preceded by its length (u32 LE), so the
// input is unambiguous. A proof is therefore good for one direction of one connection only:
// a proof an acceptor made on one connection proves nothing as an initiator's on another (the
// cross-node relay of issue 20), and a side's own challenge reflected back to it never gets it
// to compute the answer the other side needs. Both announcements are bound, so neither side's
// role, epoch, name or encryption setting can be altered in flight.
//
// Once both proofs verified, every frame is sealed (net/aead.h, AES-256-GCM, nonce = the
// frame's sequence number in its direction) under one key per direction and per connection:
//   key(direction) = HKDF-SHA256(link key, salt = initiator's challenge | acceptor's challenge,
//                                info = "tandem-link-frames-v4 " direction | the fields above)
// with direction "initiator->acceptor" or "acceptor->initiator".
#include <cstdint>
#include <string>
#include <string_view>

#include "net/aead.h"
#include "net/hmac.h"
#include "proto/replication.pb.h"

namespace tandem::replicator {

inline constexpr size_t kChallengeBytes = net::kChallengeBytes;
inline constexpr size_t kProofBytes = net::kMacBytes;
// The link's cipher: measured, docs/security.md "Cipher".
inline constexpr net::AeadCipher kLinkCipher = net::AeadCipher::kAes256Gcm;

// Who makes the proof: the side that opened the connection, or the side that accepted it.
enum class ProofDirection : uint8_t { kFromInitiator = 1, kFromAcceptor = 2 };

// What one side announced in its Hello or HelloReply.
struct Announcement {
  wire::Role role = wire::ROLE_UNSPECIFIED;
  uint64_t epoch = 0;
  std::string_view challenge;
  std::string_view node_name;
  bool cleartext = false;  // this side runs the link without encryption ([pair] encryption = false)
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

// The link's purpose key for `vm_id` (net::derive_purpose_key(psk, KeyPurpose::kLink, vm_id)).
std::string link_key(std::string_view psk, std::string_view vm_id);

// `key` is the link key, never the PSK.
std::string compute_proof(std::string_view key, ProofDirection from, const HandshakeTranscript& transcript);

// The two frame keys of one connection (net::kAeadKeyBytes each), from the link key.
struct FrameKeys {
  std::string initiator_to_acceptor;
  std::string acceptor_to_initiator;
};
FrameKeys derive_frame_keys(std::string_view key, const HandshakeTranscript& transcript);

// Constant-time comparison (CRYPTO_memcmp); false when the sizes differ.
bool proofs_equal(std::string_view expected, std::string_view presented);

// The pairs of roles a link may join. Only a primary opens a link (protecting a secondary,
// or a fenced primary knocking at its old peer, which a live primary refuses with "resync").
// A secondary accepts only a primary; a primary accepts only a primary (to refuse it with a
// reason). Checked by both sides, the acceptor before it computes any proof.
bool role_pair_allowed(wire::Role initiator, wire::Role acceptor);

}  // namespace tandem::replicator
