// HOST:PORT, parsed once for every daemon, tool and config file.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

namespace tandem::net {

struct Endpoint {
  std::string host;  // without brackets: "127.0.0.1", "::1", or a name when names are allowed
  uint16_t port = 0;
  // "127.0.0.1:7100", "[::1]:7100" (brackets around an IPv6 host).
  std::string str() const;
  bool operator==(const Endpoint&) const = default;
};

struct EndpointRules {
  bool allow_any_port = false;  // port 0: a listener on a port the system picks
  bool numeric_host = true;     // false: a host name ("witness-1") is accepted too
};

// Parses "HOST:PORT", "[V6]:PORT" (an IPv6 host needs its brackets; brackets are for IPv6
// only). Throws std::invalid_argument with the text and the reason, e.g.
//   expected HOST:PORT with a numeric host, got "localhost:7100" (the host is not a numeric IP address)
Endpoint parse_endpoint(std::string_view text, EndpointRules rules = {});

// A numeric endpoint as Asio's; throws std::invalid_argument for a host name.
boost::asio::ip::tcp::endpoint tcp_endpoint(const Endpoint& endpoint);

// Shorthand: parse_endpoint with numeric_host, then tcp_endpoint.
boost::asio::ip::tcp::endpoint parse_tcp_endpoint(std::string_view text, bool allow_any_port = false);

}  // namespace tandem::net
