// net::parse_endpoint: IPv4, bracketed IPv6, names only when allowed, port 0 only for
// listeners, and every refusal says what was expected and why.
#include "net/endpoint.h"

#include <gtest/gtest.h>

namespace {

using tandem::net::Endpoint;
using tandem::net::EndpointRules;
using tandem::net::parse_endpoint;

std::string error_of(std::string_view text, EndpointRules rules = {}) {
  try {
    parse_endpoint(text, rules);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Endpoint, NumericV4AndBracketedV6) {
  EXPECT_EQ(parse_endpoint("127.0.0.1:7100"), (Endpoint{"127.0.0.1", 7100}));
  EXPECT_EQ(parse_endpoint("[::1]:7200"), (Endpoint{"::1", 7200}));
  EXPECT_EQ(parse_endpoint("[fe80::1]:65535").port, 65535);
  EXPECT_EQ(parse_endpoint("10.0.0.3:7400").str(), "10.0.0.3:7400");
  EXPECT_EQ(parse_endpoint("[::1]:7200").str(), "[::1]:7200");
}

TEST(Endpoint, RefusalsNameTheTextAndTheReason) {
  EXPECT_NE(error_of("127.0.0.1").find("no port"), std::string::npos);
  EXPECT_NE(error_of(":1").find("no host"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:").find("1 to 65535"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:-1").find("1 to 65535"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:70000").find("1 to 65535"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:12x").find("1 to 65535"), std::string::npos);
  EXPECT_NE(error_of("127.0.0.1:0").find("port 0 is only for listening"), std::string::npos);
  EXPECT_NE(error_of("::1:7100").find("needs brackets"), std::string::npos);
  EXPECT_NE(error_of("[127.0.0.1]:1").find("brackets are for IPv6"), std::string::npos);
  const std::string named = error_of("localhost:7100");
  EXPECT_NE(named.find("expected HOST:PORT with a numeric host"), std::string::npos) << named;
  EXPECT_NE(named.find("\"localhost:7100\""), std::string::npos) << named;
  EXPECT_NE(named.find("not a numeric IP address"), std::string::npos) << named;
  EXPECT_NE(error_of("bad\nhost:1").find("\\x0a"), std::string::npos) << "control characters are escaped";
}

TEST(Endpoint, PortZeroForListenersAndNamesWhenAllowed) {
  EXPECT_EQ(parse_endpoint("127.0.0.1:0", {.allow_any_port = true}).port, 0);
  const EndpointRules names{.numeric_host = false};
  EXPECT_EQ(parse_endpoint("witness-1.example:7400", names), (Endpoint{"witness-1.example", 7400}));
  EXPECT_EQ(parse_endpoint("127.0.0.1:7400", names), (Endpoint{"127.0.0.1", 7400}));
  for (const char* bad : {"", "host", "host:", ":7400", "host:port", "host:70000", "host:0", "a b:1", "a/b:1", "[name]:1"})
    EXPECT_FALSE(error_of(bad, names).empty()) << bad;
  EXPECT_EQ(error_of("host:1", names).find("numeric"), std::string::npos);
}

TEST(Endpoint, TcpEndpoint) {
  const auto v6 = tandem::net::parse_tcp_endpoint("[::1]:9");
  EXPECT_TRUE(v6.address().is_v6());
  EXPECT_EQ(v6.port(), 9);
  EXPECT_EQ(tandem::net::parse_tcp_endpoint("127.0.0.1:0", true).port(), 0);
  EXPECT_THROW(tandem::net::parse_tcp_endpoint("127.0.0.1:0"), std::invalid_argument);
  EXPECT_THROW(tandem::net::tcp_endpoint(Endpoint{"localhost", 1}), std::invalid_argument);
}

}  // namespace
