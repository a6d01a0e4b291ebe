// Key derivation (HKDF-SHA256, RFC 5869, through OpenSSL's EVP_KDF) and the per-purpose,
// per-vm keys every authenticated protocol of Tandem uses instead of the raw pair PSK
// (docs/security.md "Keys"). One PSK file per pair; from it:
//
//   purpose key = HKDF-SHA256(ikm = psk, salt = "tandem-purpose-key-v1",
//                             info = purpose label | 0x00 | vm_id)           32 bytes
//
// so the replication link's key cannot verify a heartbeat or a witness request, and a key
// given to one vm's witness lease cannot act on another vm's lease even when the PSK file is
// shared by several pairs. Anything that takes a key takes a purpose key, never the PSK.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tandem::net {

inline constexpr size_t kDerivedKeyBytes = 32;

// HKDF-SHA256 (extract then expand): `length` bytes (1 to 8160). Throws std::runtime_error
// if OpenSSL fails and std::invalid_argument for an empty `ikm` or a bad length.
std::string hkdf_sha256(std::string_view ikm, std::string_view salt, std::string_view info, size_t length);

enum class KeyPurpose {
  kLink,       // the replication link: handshake proofs and the frame keys (replicator/transport)
  kHeartbeat,  // the second heartbeat path (fencing/detector)
  kWitness,    // the witness lease protocol (fencing/witness, fencing/arbiters/witness_arbiter)
};

// "link", "heartbeat", "witness".
std::string_view purpose_label(KeyPurpose purpose);

// The key for `purpose` and `vm_id` (kDerivedKeyBytes), see the top of this file.
// Throws std::invalid_argument for an empty `psk`.
std::string derive_purpose_key(std::string_view psk, KeyPurpose purpose, std::string_view vm_id);

}  // namespace tandem::net
