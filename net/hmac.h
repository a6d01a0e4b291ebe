// The challenge-response MAC every authenticated protocol of Tandem uses (the replication
// handshake, the witness, the second heartbeat path): HMAC-SHA256 under the pair PSK over a
// domain label followed by the fields, with fresh random challenges and constant-time checks.
// Put at most one variable-length field last-but-fixed (e.g. vm_id before fixed-size ones) so
// the input is unambiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

namespace tandem::net {

inline constexpr size_t kMacBytes = 32;        // HMAC-SHA256
inline constexpr size_t kChallengeBytes = 32;  // a handshake or heartbeat challenge

// HMAC-SHA256(key, label | parts...), kMacBytes. Throws std::runtime_error naming `label`
// if OpenSSL fails.
std::string labelled_mac(std::string_view key, std::string_view label, std::initializer_list<std::string_view> parts);

// Constant-time comparison (CRYPTO_memcmp); false when the sizes differ or either is empty.
bool macs_equal(std::string_view expected, std::string_view presented);

// `count` bytes from OpenSSL's CSPRNG (RAND_bytes). Throws std::runtime_error if it fails:
// nothing may ever run on a predictable challenge or nonce.
std::string random_bytes(size_t count);

// `value` as `bytes` little-endian bytes (1 to 8): the fixed-size fields of a MAC input.
std::string le_bytes(uint64_t value, int bytes);

}  // namespace tandem::net
