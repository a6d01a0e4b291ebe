#include "fencing/witness/protocol.h"

#include <stdexcept>

#include "net/hmac.h"

namespace tandem::fencing::witness {

namespace {
constexpr std::string_view kMacLabel = "tandem-witness-v1";
}

std::string compute_mac(std::string_view psk, Direction direction, std::string_view body) {
  const char direction_byte = static_cast<char>(direction);
  return net::labelled_mac(psk, kMacLabel, {std::string_view(&direction_byte, 1), body});
}

bool mac_matches(std::string_view psk, Direction direction, std::string_view body, std::string_view mac) {
  return mac.size() == kMacBytes && net::macs_equal(compute_mac(psk, direction, body), mac);
}

std::string seal(std::string_view psk, Direction direction, std::string_view body) {
  if (body.empty() || body.size() > kMaxWitnessBody) {
    throw std::length_error("witness: message body of " + std::to_string(body.size()) + " bytes (limit " +
                            std::to_string(kMaxWitnessBody) + ")");
  }
  const auto size = static_cast<uint32_t>(body.size());
  std::string frame;
  frame.reserve(kHeaderBytes + body.size() + kMacBytes);
  for (int shift = 24; shift >= 0; shift -= 8) frame.push_back(static_cast<char>((size >> shift) & 0xff));
  frame += body;
  frame += compute_mac(psk, direction, body);
  return frame;
}

uint32_t body_length(const std::array<uint8_t, kHeaderBytes>& header) {
  const uint32_t size = (uint32_t{header[0]} << 24) | (uint32_t{header[1]} << 16) | (uint32_t{header[2]} << 8) |
                        uint32_t{header[3]};
  return size > kMaxWitnessBody ? 0 : size;
}

std::string random_nonce() { return net::random_bytes(kNonceBytes); }

}  // namespace tandem::fencing::witness
