// Hostile and broken peers against the TCP transport, driven byte by byte over raw sockets:
// each is refused with a logged reason, nothing crashes, and the listener keeps accepting
// good peers afterwards.
#include <gtest/gtest.h>

#include <random>

#include "net/hkdf.h"
#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using namespace testing;

// After every hostile episode the listener must still authenticate a good peer.
void expect_listener_serves_good_peer(Server& server) {
  size_t before = server.accepted();
  auto transport = make_tcp_transport(identity(wire::PRIMARY));
  auto result = connect_and_wait(*transport, server.port());
  ASSERT_TRUE(result.link) << result.error;
  auto [link, inbox] = server.link(before);
  ASSERT_TRUE(link);
  result.link->send(heartbeat(77));
  ASSERT_TRUE(inbox->wait_messages(1));
  EXPECT_EQ(inbox->messages()[0].heartbeat().icount(), 77u);
}

std::string header_with_length(uint32_t length) {
  std::string header(kFrameHeaderBytes, '\0');
  for (int i = 0; i < 4; ++i) header[i] = static_cast<char>(length >> (8 * i));
  return header;
}

// --- before authentication -----------------------------------------------------------------

TEST(HostilePeer, GarbageBytesCloseTheConnection) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  std::string garbage(2000, '\0');
  std::mt19937 random(1);
  for (auto& c : garbage) c = static_cast<char>(random());
  garbage[0] = 0x10;  // a plausible small length, so it is the checksum that catches it
  garbage[1] = garbage[2] = garbage[3] = 0;
  peer.write(garbage);
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("checksum mismatch"));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, AbsurdLengthIsRefusedWithoutReadingOn) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  peer.write(header_with_length(0xffffffffu));
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("frame length 4294967295 exceeds the limit"));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, LargeFrameBeforeAuthenticationIsRefused) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  peer.write(header_with_length(1 << 20));  // legal after the handshake, not before
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("frame length 1048576 exceeds the limit of 65536"));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, FlippedBitInAHelloIsACorruptFrame) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  wire::Envelope hello;
  hello.mutable_hello()->set_vm_id(kVmId);
  hello.mutable_hello()->set_protocol_version(kProtocolVersion);
  std::string frame = frame_bytes(hello);
  frame[kFrameHeaderBytes + 3] = static_cast<char>(frame[kFrameHeaderBytes + 3] ^ 0x04);
  peer.write(frame);
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("checksum mismatch"));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, ValidFrameWithInvalidProtobufIsRefused) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  peer.write(raw_frame(std::string(20, '\xff')));
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("invalid protobuf"));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, TruncatedFrameThenCloseIsHarmless) {
  LogCapture log;
  Server server;
  {
    RawPeer peer;
    ASSERT_TRUE(peer.connect(server.port()));
    peer.write(header_with_length(100) + std::string(50, 'x'));
    peer.close();
  }
  EXPECT_TRUE(log.eventually_contains("peer closed the connection"));
  EXPECT_TRUE(eventually([&] { return server.transport().stats().handshakes_refused == 1; }));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, MessageBeforeAuthenticationIsRefused) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  peer.send(heartbeat(1, 1));
  auto answer = peer.receive();
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason(), "expected Hello, got Heartbeat");
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("expected Hello, got Heartbeat"));
  EXPECT_EQ(server.accepted(), 0u);
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, WrongProtocolVersionIsRefused) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  wire::Envelope envelope;
  auto* hello = envelope.mutable_hello();
  hello->set_protocol_version(kProtocolVersion + 1);
  hello->set_vm_id(kVmId);
  hello->set_challenge(make_challenge());
  peer.send(envelope);
  auto answer = peer.receive();
  ASSERT_TRUE(answer && answer->has_refused());
  const std::string expected = "protocol version " + std::to_string(kProtocolVersion + 1) + " not supported";
  EXPECT_EQ(answer->refused().reason().rfind(expected, 0), 0u) << answer->refused().reason();
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains(expected));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, WrongVmIdIsRefused) {
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  auto answer = peer.hello(identity(wire::PRIMARY, 1, kPsk, "someone-else"), make_challenge());
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason().rfind("vm_id mismatch", 0), 0u) << answer->refused().reason();
  // Issue 20: the refusal does not tell an unauthenticated peer which VM listens here.
  EXPECT_EQ(answer->refused().reason().find(identity(wire::SECONDARY).vm_id), std::string::npos)
      << answer->refused().reason();
  EXPECT_TRUE(peer.wait_closed());
}

TEST(HostilePeer, ShortChallengeIsRefused) {
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  auto answer = peer.hello(identity(wire::PRIMARY), "tiny");
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_NE(answer->refused().reason().find("challenge of 4 bytes"), std::string::npos);
}

TEST(HostilePeer, ProofUnderAWrongKeyIsRefused) {
  LogCapture log;
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  ASSERT_TRUE(peer.handshake(identity(wire::PRIMARY, 1, "not-the-pair-key-at-all-but-long")));
  auto answer = peer.receive();
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason(), "authentication failed");
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("wrong PSK"));
  EXPECT_TRUE(log.contains("127.0.0.1:"));
  EXPECT_EQ(server.accepted(), 0u);
  expect_listener_serves_good_peer(server);
}

// Finding 5: the proofs are made under the link's purpose key for this vm. A proof under the
// PSK itself (what version 3 used), under another purpose's key or under another vm's link
// key is refused.
TEST(HostilePeer, ProofUnderTheRawPskOrAnotherPurposesKeyIsRefused) {
  Server server;
  using net::KeyPurpose;
  for (const std::string& wrong : {kPsk, net::derive_purpose_key(kPsk, KeyPurpose::kHeartbeat, kVmId),
                                   net::derive_purpose_key(kPsk, KeyPurpose::kWitness, kVmId),
                                   net::derive_purpose_key(kPsk, KeyPurpose::kLink, "another-vm")}) {
    RawPeer peer;
    ASSERT_TRUE(peer.connect(server.port()));
    ASSERT_TRUE(peer.handshake(identity(wire::PRIMARY), std::nullopt, wrong));
    auto answer = peer.receive();
    ASSERT_TRUE(answer && answer->has_refused());
    EXPECT_EQ(answer->refused().reason(), "authentication failed");
  }
  EXPECT_EQ(server.accepted(), 0u);
  RawPeer right;
  ASSERT_TRUE(right.connect(server.port()));
  ASSERT_TRUE(right.handshake(identity(wire::PRIMARY), std::nullopt, net::derive_purpose_key(kPsk, KeyPurpose::kLink, kVmId)));
  EXPECT_TRUE(server.link(0).first);
}

TEST(HostilePeer, ForgedProofIsRefused) {
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  ASSERT_TRUE(peer.handshake(identity(wire::PRIMARY), std::string(kProofBytes, '\x5a')));
  auto answer = peer.receive();
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason(), "authentication failed");
  EXPECT_EQ(server.accepted(), 0u);
}

TEST(HostilePeer, ReplayedProofFromAnEarlierSessionIsRefused) {
  Server server;
  auto me = identity(wire::PRIMARY);
  std::string recorded;
  {
    RawPeer honest;  // a genuine session an eavesdropper records
    ASSERT_TRUE(honest.connect(server.port()));
    ASSERT_TRUE(honest.handshake(me));
    recorded = honest.last_proof();
    ASSERT_TRUE(server.link(0).first);
  }
  RawPeer replayer;
  ASSERT_TRUE(replayer.connect(server.port()));
  ASSERT_TRUE(replayer.handshake(me, recorded));  // the server picked a fresh challenge
  auto answer = replayer.receive();
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason(), "authentication failed");
  EXPECT_EQ(server.accepted(), 1u);
}

TEST(HostilePeer, ReflectedChallengeIsRefused) {
  // Without the key, an attacker could try to make the server answer its own challenge.
  Server server(identity(wire::PRIMARY));
  auto me = identity(wire::PRIMARY);  // same role as the server: the proofs would coincide
  RawPeer first;
  ASSERT_TRUE(first.connect(server.port()));
  auto reply = first.hello(me, make_challenge());
  ASSERT_TRUE(reply && reply->has_hello_reply());
  RawPeer second;
  ASSERT_TRUE(second.connect(server.port()));
  auto answer = second.hello(me, reply->hello_reply().challenge());
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason(), "reflected challenge");
  EXPECT_EQ(server.accepted(), 0u);
}

TEST(HostilePeer, SecondaryOpeningALinkIsRefusedBeforeAnyProof) {
  // Only a primary opens a link: a secondary (or a peer claiming to be one) gets no proof.
  LogCapture log;
  Server server(identity(wire::SECONDARY));
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  auto answer = peer.hello(identity(wire::SECONDARY), make_challenge());
  ASSERT_TRUE(answer && answer->has_refused()) << "a HelloReply (with a proof) went to a secondary";
  EXPECT_EQ(answer->refused().reason().rfind("role pair SECONDARY -> SECONDARY not allowed", 0), 0u)
      << answer->refused().reason();
  EXPECT_TRUE(peer.wait_closed());
  EXPECT_TRUE(log.eventually_contains("role pair SECONDARY -> SECONDARY not allowed"));
  EXPECT_EQ(server.accepted(), 0u);
  // The same through a real transport that presents itself as a secondary.
  auto secondary = make_tcp_transport(identity(wire::SECONDARY));
  auto result = connect_and_wait(*secondary, server.port());
  EXPECT_EQ(result.link, nullptr);
  EXPECT_EQ(result.error.rfind("refused by peer: role pair SECONDARY -> SECONDARY not allowed", 0), 0u) << result.error;
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, VersionThreePeerGetsAClearRefusal) {
  // A node of the previous release (protocol 3, frames in cleartext) is told why.
  Server server;
  RawPeer peer;
  ASSERT_TRUE(peer.connect(server.port()));
  wire::Envelope envelope;
  auto* hello = envelope.mutable_hello();
  hello->set_protocol_version(3);
  hello->set_vm_id(kVmId);
  hello->set_role(wire::PRIMARY);
  hello->set_epoch(1);
  hello->set_challenge(make_challenge());
  peer.send(envelope);
  auto answer = peer.receive();
  ASSERT_TRUE(answer && answer->has_refused());
  EXPECT_EQ(answer->refused().reason(), "protocol version 3 not supported (this side speaks 4)");
  EXPECT_EQ(server.accepted(), 0u);
}

TEST(HostilePeer, SilentPeerIsDroppedWhenTheHandshakeTimesOut) {
  LogCapture log;
  TransportOptions options;
  options.handshake_timeout = 300ms;
  Server server(identity(wire::SECONDARY), options);
  RawPeer silent;
  ASSERT_TRUE(silent.connect(server.port()));
  EXPECT_TRUE(silent.wait_closed());
  EXPECT_TRUE(log.eventually_contains("handshake timed out after 300 ms"));
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, SilentPeersCannotTakeEverySlotForever) {
  LogCapture log;
  TransportOptions options;
  options.handshake_timeout = 500ms;
  options.max_pending_handshakes = 2;
  Server server(identity(wire::SECONDARY), options);
  std::vector<std::unique_ptr<RawPeer>> silent;
  for (int i = 0; i < 4; ++i) {
    silent.push_back(std::make_unique<RawPeer>());
    ASSERT_TRUE(silent.back()->connect(server.port()));
  }
  EXPECT_TRUE(log.eventually_contains("too many unauthenticated connections (2)"));
  for (auto& peer : silent) EXPECT_TRUE(peer->wait_closed());  // the extra ones at once, the rest on timeout
  expect_listener_serves_good_peer(server);
}

// Issue 20, finding 4: a flood of idle connections from one address takes at most its
// per-address share of the unauthenticated slots; the rest are closed at once, and the real
// peer (another address) still gets in while the flood's admitted connections wait. On the old
// code (a global cap only) the flood held every slot until the handshake timeout.
TEST(HostilePeer, AFloodFromOneAddressLeavesRoomForTheRealPeer) {
  LogCapture log;
  TransportOptions options;
  options.handshake_timeout = 120s;  // the flood's admitted connections outlive the test
  options.max_pending_handshakes = 8;
  options.max_pending_handshakes_per_address = 2;
  Server server(identity(wire::SECONDARY), options);
  std::vector<std::unique_ptr<RawPeer>> flood;
  for (int i = 0; i < 40; ++i) {
    flood.push_back(std::make_unique<RawPeer>());
    ASSERT_TRUE(flood.back()->connect_from("127.0.0.2", server.port()));
  }
  for (size_t i = 2; i < flood.size(); ++i) EXPECT_TRUE(flood[i]->wait_closed()) << "flood connection " << i;
  EXPECT_TRUE(log.eventually_contains("too many unauthenticated connections from 127.0.0.2 (2)"));
  expect_listener_serves_good_peer(server);  // from 127.0.0.1
  expect_listener_serves_good_peer(server);
}

TEST(HostilePeer, AnAddressOutsideTheAllowListIsClosedAtAccept) {
  LogCapture log;
  TransportOptions options;
  options.allow = {"127.0.0.1"};
  Server server(identity(wire::SECONDARY), options);
  RawPeer stranger;
  ASSERT_TRUE(stranger.connect_from("127.0.0.2", server.port()));
  EXPECT_TRUE(stranger.wait_closed());
  EXPECT_TRUE(log.eventually_contains("127.0.0.2 is not in the allow-list"));
  expect_listener_serves_good_peer(server);
  TransportOptions bad;
  bad.allow = {"peer.example"};
  EXPECT_THROW(make_tcp_transport(identity(wire::SECONDARY), bad), std::invalid_argument);
}

// --- after authentication ------------------------------------------------------------------

// A raw peer that completed the handshake, and the server's view of it.
struct AuthenticatedRawPeer {
  RawPeer peer;
  std::shared_ptr<Link> link;
  std::shared_ptr<Inbox> inbox;
};

std::unique_ptr<AuthenticatedRawPeer> authenticated_raw_peer(Server& server, uint64_t epoch = 1) {
  auto result = std::make_unique<AuthenticatedRawPeer>();
  size_t index = server.accepted();
  if (!result->peer.connect(server.port()) || !result->peer.handshake(identity(wire::PRIMARY, epoch))) return nullptr;
  std::tie(result->link, result->inbox) = server.link(index);
  if (!result->link) return nullptr;
  return result;
}

std::string close_reason(Inbox& inbox) {
  if (!inbox.wait_closed()) return "(not closed)";
  return inbox.close_reasons().at(0);
}

TEST(HostileAuthenticatedPeer, CorruptFrameClosesTheLink) {
  Server server;
  auto raw = authenticated_raw_peer(server);
  ASSERT_TRUE(raw);
  raw->peer.send(heartbeat(1, 1));
  std::string frame = frame_bytes(heartbeat(2, 1));
  frame.back() = static_cast<char>(frame.back() ^ 0x80);
  raw->peer.write(frame);
  EXPECT_NE(close_reason(*raw->inbox).find("checksum mismatch"), std::string::npos);
  EXPECT_EQ(raw->inbox->messages().size(), 1u);  // the good one before it was delivered
  EXPECT_TRUE(raw->peer.wait_closed());
  expect_listener_serves_good_peer(server);
}

TEST(HostileAuthenticatedPeer, OversizeLengthClosesTheLink) {
  Server server;
  auto raw = authenticated_raw_peer(server);
  ASSERT_TRUE(raw);
  raw->peer.write(header_with_length(kMaxFramePayload + 1));
  EXPECT_NE(close_reason(*raw->inbox).find("exceeds the limit"), std::string::npos);
  expect_listener_serves_good_peer(server);
}

TEST(HostileAuthenticatedPeer, InvalidProtobufClosesTheLink) {
  Server server;
  auto raw = authenticated_raw_peer(server);
  ASSERT_TRUE(raw);
  raw->peer.send_payload(std::string(64, '\xff'));  // sealed right: the protobuf is what is wrong
  EXPECT_NE(close_reason(*raw->inbox).find("invalid protobuf"), std::string::npos);
}

TEST(HostileAuthenticatedPeer, HandshakeMessageAfterAuthenticationClosesTheLink) {
  Server server;
  auto raw = authenticated_raw_peer(server);
  ASSERT_TRUE(raw);
  wire::Envelope hello;
  hello.set_epoch(1);
  hello.mutable_hello()->set_protocol_version(kProtocolVersion);
  raw->peer.send(hello);
  EXPECT_EQ(close_reason(*raw->inbox), "protocol error: Hello after authentication");
}

TEST(HostileAuthenticatedPeer, EnvelopeWithoutBodyClosesTheLink) {
  Server server;
  auto raw = authenticated_raw_peer(server);
  ASSERT_TRUE(raw);
  wire::Envelope empty;
  empty.set_epoch(1);
  raw->peer.send(empty);
  EXPECT_NE(close_reason(*raw->inbox).find("without a body"), std::string::npos);
}

TEST(HostileAuthenticatedPeer, RefusedAfterAuthenticationClosesTheLink) {
  Server server;
  auto raw = authenticated_raw_peer(server);
  ASSERT_TRUE(raw);
  wire::Envelope refused;
  refused.set_epoch(1);
  refused.mutable_refused()->set_reason("going away");
  raw->peer.send(refused);
  EXPECT_EQ(close_reason(*raw->inbox), "refused by peer: going away");
}

TEST(HostileAuthenticatedPeer, StaleEpochIsDroppedNotObeyed) {
  Server server;
  auto raw = authenticated_raw_peer(server, /*epoch=*/8);
  ASSERT_TRUE(raw);
  raw->peer.send(heartbeat(1, 7));
  raw->peer.send(heartbeat(2, 0));
  raw->peer.send(heartbeat(3, 8));
  ASSERT_TRUE(raw->inbox->wait_messages(1));
  auto got = raw->inbox->messages();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].heartbeat().icount(), 3u);
  EXPECT_EQ(raw->link->stats().stale_epoch_dropped, 2u);
  EXPECT_TRUE(raw->link->is_open());
}

// --- the connecting side against a hostile listener -------------------------------------------

TEST(HostileListener, ProofUnderAWrongKeyFailsTheConnect) {
  RawListener listener;
  auto transport = make_tcp_transport(identity(wire::PRIMARY));
  PendingConnect connecting(*transport, listener.port());
  RawPeer server = listener.accept();
  auto hello = server.receive();
  ASSERT_TRUE(hello && hello->has_hello());
  wire::Envelope reply;
  auto* r = reply.mutable_hello_reply();
  r->set_protocol_version(kProtocolVersion);
  r->set_vm_id(kVmId);
  r->set_role(wire::SECONDARY);
  r->set_challenge(make_challenge());
  const auto& h = hello->hello();
  const HandshakeTranscript transcript{kProtocolVersion, kVmId,
                                       {h.role(), h.epoch(), h.challenge(), h.node_name()},
                                       {wire::SECONDARY, 0, r->challenge(), ""}};
  r->set_proof(compute_proof(link_key("guessed-key-guessed-key-guessed", kVmId), ProofDirection::kFromAcceptor,
                             transcript));
  server.send(reply);
  auto result = connecting.wait();
  EXPECT_EQ(result.link, nullptr);
  EXPECT_NE(result.error.find("wrong PSK"), std::string::npos) << result.error;
  auto refused = server.receive();
  ASSERT_TRUE(refused && refused->has_refused());
  EXPECT_EQ(refused->refused().reason(), "authentication failed");
}

TEST(HostileListener, ReflectedChallengeFailsTheConnect) {
  RawListener listener;
  auto transport = make_tcp_transport(identity(wire::PRIMARY));
  PendingConnect connecting(*transport, listener.port());
  RawPeer server = listener.accept();
  auto hello = server.receive();
  ASSERT_TRUE(hello && hello->has_hello());
  wire::Envelope reply;
  auto* r = reply.mutable_hello_reply();
  r->set_protocol_version(kProtocolVersion);
  r->set_vm_id(kVmId);
  r->set_challenge(hello->hello().challenge());
  server.send(reply);
  auto result = connecting.wait();
  EXPECT_EQ(result.error, "reflected challenge");
}

TEST(HostileListener, RefusalIsReportedToTheConnector) {
  RawListener listener;
  auto transport = make_tcp_transport(identity(wire::PRIMARY));
  PendingConnect connecting(*transport, listener.port());
  RawPeer server = listener.accept();
  ASSERT_TRUE(server.receive());
  wire::Envelope refused;
  refused.mutable_refused()->set_reason("protocol version 1 not supported");
  server.send(refused);
  auto result = connecting.wait();
  EXPECT_EQ(result.error, "refused by peer: protocol version 1 not supported");
}

TEST(HostileListener, SilentListenerTimesTheConnectOut) {
  RawListener listener;
  TransportOptions options;
  options.handshake_timeout = 300ms;
  auto transport = make_tcp_transport(identity(wire::PRIMARY), options);
  auto result = connect_and_wait(*transport, listener.port());  // accepted by the kernel, never answered
  EXPECT_EQ(result.link, nullptr);
  EXPECT_EQ(result.error, "handshake timed out after 300 ms");
}

TEST(HostileListener, GarbageReplyFailsTheConnect) {
  RawListener listener;
  auto transport = make_tcp_transport(identity(wire::PRIMARY));
  PendingConnect connecting(*transport, listener.port());
  RawPeer server = listener.accept();
  ASSERT_TRUE(server.receive());
  server.write(std::string(64, '\x01'));
  auto result = connecting.wait();
  EXPECT_NE(result.error.find("bad frame"), std::string::npos);
}

}  // namespace
}  // namespace tandem::replicator
