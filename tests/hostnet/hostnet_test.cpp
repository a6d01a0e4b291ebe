// The NIC's host backends: --net specifications, libslirp answering the guest (ARP) and
// forwarding a host port into the guest network, a clear error for a forward that cannot
// listen, and TAP devices (created in a private network namespace when run as root; the
// error without CAP_NET_ADMIN names the capability).
#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>

#include "hostnet/backend.h"
#include "hostnet/spec.h"
#include "hostnet/tap_backend.h"

namespace tandem::hostnet {
namespace {

using namespace std::chrono_literals;

TEST(NetSpec, ParsesUserWithForwardsAndNicOptions) {
  const NetSpec s = parse_net_spec("user,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp::5353-10.0.2.15:53,mac=02:00:00:aa:bb:cc,mtu=1400");
  EXPECT_EQ(s.kind, NetSpec::Kind::User);
  ASSERT_EQ(s.forwards.size(), 2u);
  EXPECT_FALSE(s.forwards[0].udp);
  EXPECT_EQ(s.forwards[0].host_addr, "127.0.0.1");
  EXPECT_EQ(s.forwards[0].host_port, 8080);
  EXPECT_EQ(s.forwards[0].guest_addr, "");
  EXPECT_EQ(s.forwards[0].guest_port, 80);
  EXPECT_TRUE(s.forwards[1].udp);
  EXPECT_EQ(s.forwards[1].host_addr, "127.0.0.1");  // empty means loopback, not every address
  EXPECT_EQ(s.forwards[1].guest_addr, "10.0.2.15");
  EXPECT_EQ(s.mac, (std::array<uint8_t, 6>{0x02, 0, 0, 0xaa, 0xbb, 0xcc}));
  EXPECT_EQ(s.mtu, 1400);
  EXPECT_TRUE(s.link_up);
  const NetSpec t = parse_net_spec("tap,ifname=tap0,link=down");
  EXPECT_EQ(t.kind, NetSpec::Kind::Tap);
  EXPECT_EQ(t.ifname, "tap0");
  EXPECT_FALSE(t.link_up);
}

TEST(NetSpec, RefusesMalformedSpecsWithAReason) {
  for (const char* bad : {"", "slirp", "user,hostfwd=tcp:127.0.0.1:8080", "user,hostfwd=sctp::1-:2",
                          "user,hostfwd=tcp::0-:80", "user,hostfwd=tcp::80-:70000", "user,hostfwd=tcp:localhost:1-:2",
                          "user,ifname=x", "tap", "tap,ifname=", "tap,ifname=waytoolonginterfacename",
                          "tap,hostfwd=tcp::1-:2", "user,mac=01:00:00:00:00:01", "user,mac=52:54:00:12:34",
                          "user,mtu=40", "user,mtu=abc", "user,link=sideways", "user,nonsense"}) {
    try {
      parse_net_spec(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--net"), std::string::npos) << e.what();
    }
  }
}

constexpr uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

std::vector<uint8_t> arp_request(const char* sender_ip, const char* target_ip) {
  std::vector<uint8_t> f(42, 0);
  std::memset(f.data(), 0xff, 6);
  std::memcpy(f.data() + 6, kGuestMac, 6);
  f[12] = 0x08, f[13] = 0x06;            // ARP
  f[14] = 0, f[15] = 1;                  // Ethernet
  f[16] = 0x08, f[17] = 0x00;            // IPv4
  f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;  // request
  std::memcpy(f.data() + 22, kGuestMac, 6);
  inet_pton(AF_INET, sender_ip, f.data() + 28);
  inet_pton(AF_INET, target_ip, f.data() + 38);
  return f;
}

// Waits (bounded) for a frame that `match` accepts; frames it does not want are skipped.
template <typename Match>
bool await_frame(hooks::NetPort& port, Match match, std::chrono::seconds limit = 10s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  std::vector<uint8_t> f;
  while (std::chrono::steady_clock::now() < end) {
    if (!port.wait_frame(100ms)) continue;
    while (port.receive(f)) {
      if (match(f)) return true;
    }
  }
  return false;
}

TEST(SlirpBackend, AnswersTheGuestsArpForTheHost) {
  auto port = open_backend(parse_net_spec("user"));
  port->send(arp_request("10.0.2.15", "10.0.2.2"));
  in_addr host;
  inet_pton(AF_INET, "10.0.2.2", &host);
  EXPECT_TRUE(await_frame(*port, [&](const std::vector<uint8_t>& f) {
    return f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 &&  // ARP reply
           std::memcmp(f.data(), kGuestMac, 6) == 0 && std::memcmp(f.data() + 28, &host, 4) == 0;
  }));
}

uint16_t free_port() {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

TEST(SlirpBackend, ForwardedHostPortReachesTheGuestNetwork) {
  const uint16_t port_no = free_port();
  auto port = open_backend(parse_net_spec("user,hostfwd=tcp:127.0.0.1:" + std::to_string(port_no) + "-:80"));
  const int client = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port_no);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const int rc = ::connect(client, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ASSERT_TRUE(rc == 0 || errno == EINPROGRESS) << std::strerror(errno);
  // slirp accepts on the host and opens the connection towards 10.0.2.15:80: it asks who
  // has 10.0.2.15 (ARP) or, if it knows, sends the SYN.
  in_addr guest;
  inet_pton(AF_INET, "10.0.2.15", &guest);
  EXPECT_TRUE(await_frame(*port, [&](const std::vector<uint8_t>& f) {
    const bool arp_for_guest = f.size() >= 42 && f[12] == 0x08 && f[13] == 0x06 && f[21] == 1 &&
                               std::memcmp(f.data() + 38, &guest, 4) == 0;
    const bool syn_to_80 = f.size() >= 54 && f[12] == 0x08 && f[13] == 0x00 && f[23] == 6 &&
                           std::memcmp(f.data() + 30, &guest, 4) == 0 && f[36] == 0 && f[37] == 80 && (f[47] & 0x02);
    return arp_for_guest || syn_to_80;
  }));
  ::close(client);
}

TEST(SlirpBackend, AForwardThatCannotListenIsAClearError) {
  const int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(s, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string spec = "user,hostfwd=tcp:127.0.0.1:" + std::to_string(ntohs(a.sin_port)) + "-:80";
  try {
    open_backend(parse_net_spec(spec));
    ADD_FAILURE() << "a forward onto a port in use was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(std::to_string(ntohs(a.sin_port))), std::string::npos) << e.what();
  }
  ::close(s);
}

// Runs `body` in a child process inside a new network namespace; returns its exit status.
template <typename Body>
int in_private_netns(Body body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) ::_exit(90);
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

TEST(TapBackend, CreatesTheDeviceAndBringsItUp) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (a private network namespace)";
  const int status = in_private_netns([] {
    try {
      TapBackend tap(parse_net_spec("tap,ifname=tndm0"));
      const unsigned index = if_nametoindex("tndm0");
      if (index == 0) return 2;
      const std::vector<uint8_t> frame = arp_request("10.0.2.15", "10.0.2.2");
      tap.send(frame);  // goes into the kernel's side of the TAP; must not fail or block
      return 0;
    } catch (const std::exception&) {
      return 1;
    }
  });
  EXPECT_EQ(status, 0);
}

TEST(TapBackend, WithoutCapNetAdminTheErrorSaysSo) {
  if (::geteuid() != 0) {
    try {
      TapBackend tap(parse_net_spec("tap,ifname=tndm1"));
      ADD_FAILURE() << "an unprivileged process created a TAP device";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("CAP_NET_ADMIN"), std::string::npos) << e.what();
    }
    return;
  }
  // As root: give up root (and with it CAP_NET_ADMIN) in a child, inside its own namespace.
  const int status = in_private_netns([] {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) return 91;
    try {
      TapBackend tap(parse_net_spec("tap,ifname=tndm1"));
      return 1;
    } catch (const std::runtime_error& e) {
      return std::string(e.what()).find("CAP_NET_ADMIN") != std::string::npos ? 0 : 2;
    }
  });
  EXPECT_EQ(status, 0);
}

}  // namespace
}  // namespace tandem::hostnet
