#pragma once
// `--net` specifications, QEMU-style:
//   user[,hostfwd=tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT]...   libslirp NAT (rootless)
//   tap,ifname=NAME                                                     a TAP device
// Either may add NIC options: mac=52:54:00:12:34:56, mtu=1500, link=up|down.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::hostnet {

struct HostForward {
  bool udp = false;
  std::string host_addr = "127.0.0.1";  // numeric IPv4; empty in the spec means 127.0.0.1
  uint16_t host_port = 0;
  std::string guest_addr;  // numeric IPv4; empty = the guest's DHCP address (10.0.2.15)
  uint16_t guest_port = 0;
};

struct NetSpec {
  enum class Kind { User, Tap } kind = Kind::User;
  std::vector<HostForward> forwards;  // user
  std::string ifname;                 // tap
  // NIC options.
  std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  uint16_t mtu = 1500;
  bool link_up = true;
};

// Throws std::invalid_argument with a one-line reason for a malformed specification.
NetSpec parse_net_spec(const std::string& spec);

// "52:54:00:12:34:56".
std::string mac_text(const std::array<uint8_t, 6>& mac);

// The pieces, for front ends that read them separately (tandemd's [net] section). Each
// throws std::invalid_argument with the bare reason (no "--net" prefix).
// "user" | "tap".
NetSpec::Kind parse_net_backend(std::string_view name);
// One KEY=VALUE option of `out`'s backend: hostfwd (user, appends), ifname (tap), mac, mtu, link.
void set_net_option(NetSpec& out, std::string_view key, std::string_view value);

}  // namespace tandem::hostnet
