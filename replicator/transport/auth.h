#pragma once
// Handshake authentication (proto/replication.proto): each side proves it holds the pair's
// pre-shared key by an HMAC-SHA256 over the challenge the other side just chose:
//   proof = HMAC-SHA256(psk, "tandem-auth-v1" | own role as u32 LE | peer challenge |
//                            vm_id | own epoch as u64 LE)
// vm_id is the only variable-length field and sits before a fixed-size one, so the input is
// unambiguous. The role and epoch a side announced are bound into its proof, so they cannot
// be altered in flight.
#include <cstdint>
#include <string>
#include <string_view>

#include "proto/replication.pb.h"

namespace tandem::replicator {

inline constexpr size_t kChallengeBytes = 32;
inline constexpr size_t kProofBytes = 32;

// kChallengeBytes fresh random bytes (OpenSSL RAND_bytes). Throws std::runtime_error if the
// generator fails: a handshake must never run on a predictable challenge.
std::string make_challenge();

std::string compute_proof(std::string_view psk, wire::Role own_role, std::string_view peer_challenge,
                          std::string_view vm_id, uint64_t own_epoch);

// Constant-time comparison (CRYPTO_memcmp); false when the sizes differ.
bool proofs_equal(std::string_view expected, std::string_view presented);

}  // namespace tandem::replicator
