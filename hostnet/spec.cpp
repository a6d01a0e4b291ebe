#include "hostnet/spec.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <charconv>
#include <stdexcept>
#include <string_view>

namespace tandem::hostnet {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

// The reason alone; parse_net_spec prefixes "--net SPEC: ", tandemd's config the file and key.
[[noreturn]] void bad(const std::string& why) { throw std::invalid_argument(why); }

uint16_t port(std::string_view text) {
  unsigned v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v == 0 || v > 65535) {
    bad(fmt::format("'{}' is not a port number (1-65535)", text));
  }
  return static_cast<uint16_t>(v);
}

std::string ipv4(std::string_view text) {
  const std::string s(text);
  in_addr a;
  if (inet_pton(AF_INET, s.c_str(), &a) != 1) bad(fmt::format("'{}' is not a numeric IPv4 address", s));
  return s;
}

// [ADDR]:PORT
void addr_port(std::string_view text, std::string& addr, uint16_t& p) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) bad(fmt::format("'{}' is not [ADDRESS]:PORT", text));
  if (colon > 0) addr = ipv4(text.substr(0, colon));
  p = port(text.substr(colon + 1));
}

HostForward hostfwd(std::string_view text) {
  // tcp:[HOSTADDR]:HOSTPORT-[GUESTADDR]:GUESTPORT
  HostForward f;
  const size_t colon = text.find(':');
  if (colon == std::string_view::npos) bad(fmt::format("hostfwd={} is not PROTO:[HOST]:PORT-[GUEST]:PORT", text));
  const std::string_view proto = text.substr(0, colon);
  if (proto == "udp") {
    f.udp = true;
  } else if (proto != "tcp") {
    bad(fmt::format("hostfwd protocol '{}' is not tcp or udp", proto));
  }
  const std::string_view rest = text.substr(colon + 1);
  const size_t dash = rest.find('-');
  if (dash == std::string_view::npos) bad(fmt::format("hostfwd={} is not PROTO:[HOST]:PORT-[GUEST]:PORT", text));
  addr_port(rest.substr(0, dash), f.host_addr, f.host_port);
  addr_port(rest.substr(dash + 1), f.guest_addr, f.guest_port);
  return f;
}

std::array<uint8_t, 6> mac(std::string_view text) {
  const auto parts = split(text, ':');
  std::array<uint8_t, 6> m{};
  if (parts.size() != 6) bad(fmt::format("mac={} is not six hex bytes like 52:54:00:12:34:56", text));
  for (size_t i = 0; i < 6; ++i) {
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(parts[i].data(), parts[i].data() + parts[i].size(), v, 16);
    if (ec != std::errc{} || end != parts[i].data() + parts[i].size() || parts[i].size() != 2) {
      bad(fmt::format("mac={} is not six hex bytes like 52:54:00:12:34:56", text));
    }
    m[i] = static_cast<uint8_t>(v);
  }
  if (m[0] & 1) bad(fmt::format("mac={} is a multicast address", text));
  return m;
}

}  // namespace

std::string mac_text(const std::array<uint8_t, 6>& m) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5]);
}

void set_net_option(NetSpec& out, std::string_view key, std::string_view value) {
  const char* backend = out.kind == NetSpec::Kind::User ? "user" : "tap";
  if (key == "hostfwd" && out.kind == NetSpec::Kind::User) {
    out.forwards.push_back(hostfwd(value));
  } else if (key == "ifname" && out.kind == NetSpec::Kind::Tap) {
    if (value.empty() || value.size() >= 16 || value.find('/') != std::string_view::npos) {
      bad(fmt::format("ifname '{}' is not an interface name (1-15 characters)", value));
    }
    out.ifname = value;
  } else if (key == "mac") {
    out.mac = mac(value);
  } else if (key == "mtu") {
    unsigned v = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), v);
    if (ec != std::errc{} || end != value.data() + value.size() || v < 68 || v > 9000) {
      bad(fmt::format("mtu={} is not a number in 68..9000", value));
    }
    out.mtu = static_cast<uint16_t>(v);
  } else if (key == "link") {
    if (value != "up" && value != "down") bad(fmt::format("link={} is not up or down", value));
    out.link_up = value == "up";
  } else {
    bad(fmt::format("unknown option '{}' for the {} backend", key, backend));
  }
}

NetSpec::Kind parse_net_backend(std::string_view name) {
  if (name == "user") return NetSpec::Kind::User;
  if (name == "tap") return NetSpec::Kind::Tap;
  bad(fmt::format("the backend '{}' is not 'user' or 'tap'", name));
}

NetSpec parse_net_spec(const std::string& spec) {
  try {
    const auto parts = split(spec, ',');
    NetSpec out;
    out.kind = parse_net_backend(parts[0]);
    for (size_t i = 1; i < parts.size(); ++i) {
      const std::string_view opt = parts[i];
      const size_t eq = opt.find('=');
      if (eq == std::string_view::npos) bad(fmt::format("option '{}' is not KEY=VALUE", opt));
      set_net_option(out, opt.substr(0, eq), opt.substr(eq + 1));
    }
    if (out.kind == NetSpec::Kind::Tap && out.ifname.empty()) bad("tap needs ifname=NAME");
    return out;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(fmt::format("--net {}: {}", spec, e.what()));
  }
}

}  // namespace tandem::hostnet
