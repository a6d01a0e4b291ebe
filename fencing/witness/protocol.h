#pragma once
// The witness wire format, shared by tandem-witness (WitnessServer) and WitnessArbiter.
//
// One request and one reply per TCP connection. Each is a frame:
//   u32 big-endian body length | body (a serialized WitnessRequest/WitnessReply) | 32-byte MAC
// with MAC = HMAC-SHA256(psk, "tandem-witness-v1" | direction byte | body). The direction
// byte keeps a captured request from being passed off as a reply and vice versa. A length of
// 0 or over kMaxWitnessBody is refused before anything is read or allocated.
//
// Replay protection: the request carries a fresh 16-byte nonce and the reply echoes it (the
// client drops a reply for any other nonce); the witness refuses a nonce it has seen (see
// NonceCache in witness_server.h).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace tandem::fencing::witness {

inline constexpr size_t kHeaderBytes = 4;
inline constexpr size_t kMacBytes = 32;
inline constexpr size_t kNonceBytes = 16;
inline constexpr uint32_t kMaxWitnessBody = 4096;  // a request is ~100 bytes; ids are short

enum class Direction : uint8_t { Request = 1, Reply = 2 };

// HMAC-SHA256 over the labelled body. Throws std::runtime_error if OpenSSL fails.
std::string compute_mac(std::string_view psk, Direction direction, std::string_view body);

// Constant-time check of `mac` (kMacBytes) against the body.
bool mac_matches(std::string_view psk, Direction direction, std::string_view body, std::string_view mac);

// The whole frame (header | body | MAC) for `body`. Throws std::length_error over the limit.
std::string seal(std::string_view psk, Direction direction, std::string_view body);

// The body length announced by a header; 0 when it is 0 or over kMaxWitnessBody (refuse).
uint32_t body_length(const std::array<uint8_t, kHeaderBytes>& header);

// kNonceBytes from OpenSSL's CSPRNG.
std::string random_nonce();

}  // namespace tandem::fencing::witness
