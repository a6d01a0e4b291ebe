#include "net/endpoint.h"

#include "net/encoding.h"

#include <boost/asio/ip/address.hpp>
#include <charconv>
#include <stdexcept>

#include <fmt/format.h>

namespace tandem::net {

namespace {

// A DNS-style name: letters, digits, '-', '.', '_' (no spaces, slashes or colons).
bool plausible_name(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  for (char c : host) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                    c == '.' || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string Endpoint::str() const {
  return host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, port) : fmt::format("{}:{}", host, port);
}

Endpoint parse_endpoint(std::string_view text, EndpointRules rules) {
  const auto fail_with = [&](std::string_view why) -> Endpoint {
    throw std::invalid_argument(fmt::format("expected HOST:PORT{}, got {} ({})",
                                            rules.numeric_host ? " with a numeric host" : "", quoted(text), why));
  };
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail_with("no port");
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string_view::npos) return fail_with("an IPv6 host needs brackets: [::1]:7100");
  if (host.empty()) return fail_with("no host");
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(std::string(host), ec);
  if (ec) {
    if (rules.numeric_host || bracketed) return fail_with("the host is not a numeric IP address");
    if (!plausible_name(host)) return fail_with("the host is neither an IP address nor a host name");
  } else if (bracketed != address.is_v6()) {
    return fail_with("brackets are for IPv6 hosts only");
  }
  unsigned port = 0;
  const auto [end, err] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || err != std::errc() || end != port_text.data() + port_text.size() || port > 65535)
    return fail_with(rules.allow_any_port ? "the port must be a number from 0 to 65535"
                                          : "the port must be a number from 1 to 65535");
  if (port == 0 && !rules.allow_any_port) return fail_with("port 0 is only for listening");
  return Endpoint{std::string(host), static_cast<uint16_t>(port)};
}

boost::asio::ip::tcp::endpoint tcp_endpoint(const Endpoint& endpoint) {
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(endpoint.host, ec);
  if (ec) throw std::invalid_argument(fmt::format("{}: the host is not a numeric IP address", quoted(endpoint.host)));
  return {address, endpoint.port};
}

boost::asio::ip::tcp::endpoint parse_tcp_endpoint(std::string_view text, bool allow_any_port) {
  return tcp_endpoint(parse_endpoint(text, {.allow_any_port = allow_any_port, .numeric_host = true}));
}

}  // namespace tandem::net
