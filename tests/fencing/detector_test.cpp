// The dual-path failure detector on real loopback sockets: two detectors hear each other;
// verdicts follow the link and the second path; a stopped peer, a wrong key, forged,
// replayed and garbage heartbeats are told apart (and refused) as they should be.
#include "fencing/detector/detector.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "net/frame.h"
#include "net/hkdf.h"
#include "net/hmac.h"
#include "proto/fencing.pb.h"
#include "tests/fencing/witness_helpers.h"

namespace {

using namespace tandem::fencing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kPsk = "0123456789abcdef0123456789abcdef";

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string at(uint16_t port) { return "127.0.0.1:" + std::to_string(port); }

DetectorConfig config(uint16_t listen, uint16_t peer, const std::string& psk = kPsk, const std::string& vm = "kv") {
  DetectorConfig c;
  c.vm_id = vm;
  c.psk = psk;
  c.link = {20ms, 5};
  c.second.listen = at(listen);
  c.second.peer = at(peer);
  c.second.timing = {20ms, 25};  // silent after 500 ms: a loaded machine never looks like a partition
  return c;
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return f();
}

// A raw client (2 s receive timeout); `source`: another loopback address (127.0.0.2) playing a
// second host.
int connect_to(uint16_t port, const char* source = nullptr) {
  return tandem::fencing::testing::connect_local(port, 2s, source);
}

std::string read_exact(int fd, size_t n) {
  std::string out;
  char buffer[256];
  while (out.size() < n) {
    const ssize_t r = ::recv(fd, buffer, std::min(sizeof buffer, n - out.size()), 0);
    if (r <= 0) break;
    out.append(buffer, static_cast<size_t>(r));
  }
  return out;
}

// One whole heartbeat frame (net frame header + payload), or "" if the stream ends first.
std::string read_frame(int fd) {
  std::string header = read_exact(fd, tandem::net::kFrameHeaderBytes);
  if (header.size() != tandem::net::kFrameHeaderBytes) return "";
  const auto fields = tandem::net::read_frame_header(reinterpret_cast<const uint8_t*>(header.data()));
  if (fields.length > 1024) return "";
  const std::string payload = read_exact(fd, fields.length);
  return payload.size() == fields.length ? header + payload : "";
}

// True when the peer closes the connection within the receive timeout (a reset when it
// closed with bytes of ours unread, e.g. after refusing a frame by its header).
bool closed_by_peer(int fd) {
  char c;
  const ssize_t n = ::recv(fd, &c, 1, 0);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

TEST(FailureDetector, TwoNodesHearEachOtherAndTheVerdictFollowsBothPaths) {
  const uint16_t pa = free_port(), pb = free_port();
  FailureDetector a(config(pa, pb)), b(config(pb, pa));
  a.set_local(7, 1);
  b.set_local(7, 2);
  a.start();
  b.start();
  ASSERT_TRUE(eventually([&] { return a.second_path_alive() && b.second_path_alive(); }));
  EXPECT_EQ(a.last_beat().epoch, 7u);
  EXPECT_EQ(a.last_beat().role, 2);
  EXPECT_EQ(b.last_beat().role, 1);
  b.set_local(8, 1);  // what the heartbeats announce follows the node
  EXPECT_TRUE(eventually([&] { return a.last_beat().epoch == 8 && a.last_beat().role == 1; }));

  // The link never heard from: degraded, not suspected.
  EXPECT_EQ(a.verdict(), PeerVerdict::LinkSilent);
  a.link_heard();
  EXPECT_EQ(a.verdict(), PeerVerdict::Alive);
  // Link silence is interval * misses (100 ms here) after the last message.
  EXPECT_TRUE(a.link_alive(Clock::now() + 50ms));
  EXPECT_FALSE(a.link_alive(Clock::now() + 150ms));
  a.link_heard();
  a.link_down();
  EXPECT_EQ(a.verdict(), PeerVerdict::LinkSilent);

  // The peer's process goes: the connection ends with EOF, and the path is silent at once.
  a.link_heard();
  b.stop();
  ASSERT_TRUE(eventually([&] { return !a.second_path_alive(); }, 2s));
  EXPECT_TRUE(a.second_path_peer_closed());
  EXPECT_EQ(a.verdict(), PeerVerdict::SecondPathSilent);
  a.link_down();
  EXPECT_EQ(a.verdict(), PeerVerdict::Suspected);
  EXPECT_EQ(a.stats().rejected, 0u);
  EXPECT_GE(a.stats().beats_received, 2u);
}

TEST(FailureDetector, ASilentPathGoesSilentAfterIntervalTimesMissesWithoutPeerClosed) {
  // A one-way relay between b's sender and a's listener that can stop forwarding: a
  // partition that drops packets (no EOF, no reset).
  const uint16_t pa = free_port(), pb = free_port(), relay_port = free_port();
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in ra{};
  ra.sin_family = AF_INET;
  ra.sin_port = htons(relay_port);
  ra.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&ra), sizeof ra), 0);
  ::listen(listener, 4);
  std::atomic<bool> forward{true}, done{false};
  std::thread relay([&] {
    const int from_b = ::accept(listener, nullptr, nullptr);
    const int to_a = connect_to(pa);
    timeval tv{0, 20000};
    ::setsockopt(from_b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(to_a, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buffer[512];
    while (!done) {
      ssize_t n = ::recv(to_a, buffer, sizeof buffer, 0);  // the challenge
      if (n > 0) ::send(from_b, buffer, static_cast<size_t>(n), MSG_NOSIGNAL);
      n = ::recv(from_b, buffer, sizeof buffer, 0);
      if (n > 0 && forward) ::send(to_a, buffer, static_cast<size_t>(n), MSG_NOSIGNAL);
    }
    ::close(from_b);
    ::close(to_a);
  });
  FailureDetector a(config(pa, pb)), b(config(pb, relay_port));
  a.start();
  b.start();
  ASSERT_TRUE(eventually([&] { return a.second_path_alive(); }));
  forward = false;
  const auto cut = Clock::now();
  ASSERT_TRUE(eventually([&] { return !a.second_path_alive(); }, 2s));
  EXPECT_GE(Clock::now() - cut, 400ms);  // interval * misses = 500 ms after the last beat (<= 60 ms before the cut)
  EXPECT_FALSE(a.second_path_peer_closed());
  done = true;
  relay.join();
  ::close(listener);
}

TEST(FailureDetector, AWrongKeyOrVmIsRefusedAndNeverCountsAsAlive) {
  const uint16_t pa = free_port(), pb = free_port(), pc = free_port();
  FailureDetector a(config(pa, pb));
  FailureDetector wrong_key(config(pb, pa, "ffffffffffffffffffffffffffffffff"));
  a.start();
  wrong_key.start();
  ASSERT_TRUE(eventually([&] { return a.stats().rejected >= 2; }));
  EXPECT_NE(a.stats().last_rejection.find("bad HMAC"), std::string::npos) << a.stats().last_rejection;
  EXPECT_FALSE(a.second_path_alive());
  wrong_key.stop();
  FailureDetector other_vm(config(pc, pa, kPsk, "another-vm"));
  const uint64_t before = a.stats().rejected;
  other_vm.start();
  ASSERT_TRUE(eventually([&] { return a.stats().rejected > before; }));
  EXPECT_FALSE(a.second_path_alive());
}

TEST(FailureDetector, GarbageForgedAndReplayedHeartbeatsCloseTheConnection) {
  const uint16_t pa = free_port(), pb = free_port(), tap_port = free_port();
  FailureDetector a(config(pa, pb));
  a.start();

  // Garbage: bytes that are not a heartbeat frame (their "length" is far over the limit).
  int fd = connect_to(pa);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(read_exact(fd, 32).size(), 32u);
  ::send(fd, std::string(53, 'x').data(), 53, MSG_NOSIGNAL);
  EXPECT_TRUE(closed_by_peer(fd));
  ::close(fd);
  EXPECT_NE(a.stats().last_rejection.find("not a heartbeat"), std::string::npos) << a.stats().last_rejection;

  // A frame whose checksum does not match its payload.
  fd = connect_to(pa);
  read_exact(fd, 32);
  std::string corrupt = tandem::net::encode_frame("not a heartbeat message");
  corrupt.back() ^= 1;
  ::send(fd, corrupt.data(), corrupt.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(closed_by_peer(fd));
  ::close(fd);
  EXPECT_NE(a.stats().last_rejection.find("not a heartbeat"), std::string::npos) << a.stats().last_rejection;

  // Forged: a well-formed Heartbeat with a made-up MAC.
  fd = connect_to(pa);
  read_exact(fd, 32);
  tandem::fencing::wire::Heartbeat forged_beat;
  forged_beat.set_counter(1);
  forged_beat.set_epoch(7);
  forged_beat.set_role(1);
  forged_beat.set_mac(std::string(32, '\1'));
  const std::string forged = tandem::net::encode_frame(forged_beat, "test");
  ::send(fd, forged.data(), forged.size(), MSG_NOSIGNAL);
  EXPECT_TRUE(closed_by_peer(fd));
  ::close(fd);
  EXPECT_NE(a.stats().last_rejection.find("bad HMAC"), std::string::npos);

  // Replay: capture genuine heartbeats of b through a tap, then send the first one again on
  // the same connection (counter) and on a new one (challenge).
  const int tap = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(tap, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in ta{};
  ta.sin_family = AF_INET;
  ta.sin_port = htons(tap_port);
  ta.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(tap, reinterpret_cast<sockaddr*>(&ta), sizeof ta), 0);
  ::listen(tap, 4);
  FailureDetector b(config(pb, tap_port));
  b.start();
  const int from_b = ::accept(tap, nullptr, nullptr);
  timeval tv{2, 0};
  ::setsockopt(from_b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const int to_a = connect_to(pa);
  const std::string challenge = read_exact(to_a, 32);
  ::send(from_b, challenge.data(), challenge.size(), MSG_NOSIGNAL);
  const std::string first = read_frame(from_b), second = read_frame(from_b);
  ASSERT_FALSE(first.empty());
  ASSERT_FALSE(second.empty());
  const uint64_t good_before = a.stats().beats_received;
  ::send(to_a, first.data(), first.size(), MSG_NOSIGNAL);
  ::send(to_a, second.data(), second.size(), MSG_NOSIGNAL);
  ASSERT_TRUE(eventually([&] { return a.stats().beats_received == good_before + 2; }));
  EXPECT_TRUE(a.second_path_alive());
  ::send(to_a, first.data(), first.size(), MSG_NOSIGNAL);  // replayed on the same connection
  EXPECT_TRUE(closed_by_peer(to_a));
  EXPECT_NE(a.stats().last_rejection.find("counter 1, expected 3"), std::string::npos) << a.stats().last_rejection;
  const int fresh = connect_to(pa);
  read_exact(fresh, 32);
  ::send(fresh, first.data(), first.size(), MSG_NOSIGNAL);  // replayed on another connection
  EXPECT_TRUE(closed_by_peer(fresh));
  EXPECT_NE(a.stats().last_rejection.find("bad HMAC"), std::string::npos);
  EXPECT_EQ(a.stats().beats_received, good_before + 2);
  for (int f : {to_a, fresh, from_b, tap}) ::close(f);
}

// Issue 20, finding 4: the heartbeat listener had no cap at all. A flood of idle connections from
// one address gets its per-address share (each sent a challenge); the rest are closed before any
// byte, and the real peer (another address) is heard meanwhile.
TEST(FailureDetector, AFloodFromOneAddressIsCappedAndThePeerIsStillHeard) {
  const uint16_t pa = free_port(), pb = free_port();
  DetectorConfig ca = config(pa, pb);
  ca.second.admission = {8, 3, {}};
  FailureDetector a(ca), b(config(pb, pa));
  a.start();
  std::vector<int> flood;
  for (int i = 0; i < 30; ++i) {
    flood.push_back(connect_to(pa, "127.0.0.2"));
    ASSERT_GE(flood.back(), 0);
  }
  size_t closed = 0;
  for (int fd : flood) closed += closed_by_peer(fd) ? 1 : 0;  // an admitted one gets its challenge
  EXPECT_EQ(closed, flood.size() - 3);
  EXPECT_NE(a.stats().last_rejection.find("too many unauthenticated connections from 127.0.0.2"), std::string::npos)
      << a.stats().last_rejection;
  b.start();  // from 127.0.0.1
  EXPECT_TRUE(eventually([&] { return a.second_path_alive(); }));
  for (int fd : flood) ::close(fd);
  DetectorConfig bad = ca;
  bad.second.admission.allow = {"not-an-address"};
  EXPECT_THROW(FailureDetector{bad}, std::invalid_argument);
}

// Finding 5: a beat is MACed under the heartbeat purpose key of this vm. One MACed under the
// PSK itself, the link's key or another vm's heartbeat key is refused; the same beat under the
// right key is taken (so the refusals are about the key, nothing else).
TEST(FailureDetector, BeatsUnderAnotherPurposesKeyAreRefused) {
  const uint16_t pa = free_port(), pb = free_port();
  FailureDetector a(config(pa, pb));
  a.start();
  using tandem::net::KeyPurpose;
  auto beat_under = [&](const std::string& key) {
    const int fd = connect_to(pa);
    const std::string challenge = read_exact(fd, 32);
    tandem::fencing::wire::Heartbeat beat;
    beat.set_counter(1);
    beat.set_epoch(7);
    beat.set_role(1);
    beat.set_mac(tandem::net::labelled_mac(key, "tandem-hb-v1",
                                           {challenge, "kv", tandem::net::le_bytes(1, 8), tandem::net::le_bytes(7, 8),
                                            tandem::net::le_bytes(1, 1)}));
    const std::string frame = tandem::net::encode_frame(beat, "test");
    ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    return fd;
  };
  for (const std::string& wrong : {std::string(kPsk), tandem::net::derive_purpose_key(kPsk, KeyPurpose::kLink, "kv"),
                                   tandem::net::derive_purpose_key(kPsk, KeyPurpose::kWitness, "kv"),
                                   tandem::net::derive_purpose_key(kPsk, KeyPurpose::kHeartbeat, "other-vm")}) {
    const int fd = beat_under(wrong);
    EXPECT_TRUE(closed_by_peer(fd));
    ::close(fd);
    EXPECT_NE(a.stats().last_rejection.find("bad HMAC"), std::string::npos) << a.stats().last_rejection;
  }
  EXPECT_EQ(a.stats().beats_received, 0u);
  const int fd = beat_under(tandem::net::derive_purpose_key(kPsk, KeyPurpose::kHeartbeat, "kv"));
  EXPECT_TRUE(eventually([&] { return a.stats().beats_received == 1; }));
  ::close(fd);
}

TEST(FailureDetector, WithoutASecondPathTheLinkAloneDecides) {
  DetectorConfig c;
  c.vm_id = "kv";
  c.psk = kPsk;
  c.link = {10ms, 3};
  FailureDetector d(c);
  d.start();
  EXPECT_FALSE(d.second_path_enabled());
  EXPECT_EQ(d.verdict(), PeerVerdict::Suspected);
  d.link_heard();
  EXPECT_EQ(d.verdict(), PeerVerdict::Alive);
  EXPECT_EQ(d.verdict(Clock::now() + 40ms), PeerVerdict::Suspected);
}

TEST(FailureDetector, BadSettingsAreRefusedAtConstruction) {
  DetectorConfig c = config(free_port(), free_port());
  c.psk = "short";
  EXPECT_THROW(FailureDetector{c}, std::invalid_argument);
  c = config(1, 2);
  c.second.peer = "localhost:7";
  EXPECT_THROW(FailureDetector{c}, std::invalid_argument);
  c = config(1, 2);
  c.second.timing.misses = 0;
  EXPECT_THROW(FailureDetector{c}, std::invalid_argument);
}

TEST(FailureDetector, AListenAddressInUseThrowsOnStart) {
  const uint16_t pa = free_port(), pb = free_port();
  FailureDetector a(config(pa, pb));
  a.start();
  FailureDetector clash(config(pa, pb));
  EXPECT_THROW(clash.start(), std::system_error);
}

}  // namespace
