// Hex and base64 (OpenSSL's EVP_EncodeBlock/EVP_DecodeBlock), for keys, digests and etcd's
// JSON gateway.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tandem::net {

// Lower-case hex, two digits a byte.
std::string to_hex(std::string_view bytes);
// The bytes of an even-length hex string (either case); nullopt for anything else.
std::optional<std::string> from_hex(std::string_view hex);

// `text` in double quotes with '"' and '\\' escaped and control bytes as \xNN: a value shown
// the way the user wrote it, in an error message.
std::string quoted(std::string_view text);

// Standard base64 with padding (RFC 4648 section 4).
std::string base64_encode(std::string_view bytes);
// The bytes of padded standard base64; nullopt for a length that is not a multiple of 4, a
// character outside the alphabet, or padding anywhere but the end.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace tandem::net
