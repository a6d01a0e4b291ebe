// The cross-node proof relay (issue 20, finding 1), played for real: two transports that
// share the pair's PSK, both listening on 127.0.0.1 as tandemd's nodes do, and an attacker
// without the key relaying handshake messages between them over plain sockets.
//
// The attack against protocol version 2: the attacker opens a connection to B (a standby
// secondary) claiming to be the primary A at A's epoch and receives B's challenge; it sends
// that challenge to A in a Hello of its own, and A, as the acceptor, answers with its proof
// over it; the attacker hands that proof to B, which took it for A's. From version 3 each
// proof binds both challenges, both announcements and the direction, so a proof made by an
// acceptor on one connection proves nothing as an initiator on another.
#include <gtest/gtest.h>

#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using namespace testing;

// What the attacker announces: A's name, role and epoch, with a key it does not have.
LinkIdentity impersonation(const LinkIdentity& victim) {
  LinkIdentity id = victim;
  id.psk = "the-attacker-does-not-have-the-key";
  return id;
}

wire::Envelope auth_proof(const std::string& proof, uint64_t epoch) {
  wire::Envelope envelope;
  envelope.set_epoch(epoch);
  envelope.mutable_auth_proof()->set_proof(proof);
  return envelope;
}

TEST(ProofRelay, PrimarysProofRelayedToTheSecondaryDoesNotSignTheAttackerIn) {
  LogCapture log;
  const LinkIdentity a = identity(wire::PRIMARY, 7);    // the live primary, listening too
  const LinkIdentity b = identity(wire::SECONDARY, 3);  // the standby secondary
  Server node_a(a);
  Server node_b(b);
  const LinkIdentity claimed = impersonation(a);

  // 1. To B, as A: B answers with its challenge.
  RawPeer to_b;
  ASSERT_TRUE(to_b.connect(node_b.port()));
  auto b_reply = to_b.hello(claimed, make_challenge());
  ASSERT_TRUE(b_reply && b_reply->has_hello_reply());
  const std::string b_challenge = b_reply->hello_reply().challenge();

  // 2. To A, carrying B's challenge: whatever A answers is all the attacker can get from it.
  RawPeer to_a;
  ASSERT_TRUE(to_a.connect(node_a.port()));
  auto a_reply = to_a.hello(claimed, b_challenge);
  ASSERT_TRUE(a_reply);
  ASSERT_TRUE(a_reply->has_hello_reply()) << "A refused: " << a_reply->refused().reason();
  const std::string a_proof = a_reply->hello_reply().proof();
  ASSERT_FALSE(a_proof.empty());

  // 3. A's proof, handed to B as the attacker's own.
  ASSERT_TRUE(to_b.send(auth_proof(a_proof, a.epoch)));
  auto verdict = to_b.receive();
  ASSERT_TRUE(verdict) << "B answered nothing: it took the relayed proof (the attacker is signed in as A)";
  ASSERT_TRUE(verdict->has_refused());
  EXPECT_EQ(verdict->refused().reason(), "authentication failed");
  EXPECT_TRUE(to_b.wait_closed());
  EXPECT_EQ(node_b.accepted(), 0u);
  EXPECT_EQ(node_b.transport().stats().links_accepted, 0u);
  EXPECT_TRUE(log.eventually_contains("wrong PSK (or a replayed/forged proof)"));

  // The real A still protects B afterwards.
  auto transport_a = make_tcp_transport(a);
  auto result = connect_and_wait(*transport_a, node_b.port());
  ASSERT_TRUE(result.link) << result.error;
  auto [link, inbox] = node_b.link(0);
  ASSERT_TRUE(link);
  EXPECT_EQ(link->peer().epoch, 7u);
  EXPECT_EQ(link->peer().role, wire::PRIMARY);
}

// The same relay between two primaries (a fenced old primary and the promoted one both
// listen): the attacker signs in to A as B, using B to answer A's challenge.
TEST(ProofRelay, ProofRelayedBetweenTwoPrimariesDoesNotSignTheAttackerIn) {
  const LinkIdentity a = identity(wire::PRIMARY, 7);
  const LinkIdentity b = identity(wire::PRIMARY, 7);
  Server node_a(a);
  Server node_b(b);
  const LinkIdentity claimed = impersonation(b);

  RawPeer to_a;
  ASSERT_TRUE(to_a.connect(node_a.port()));
  auto a_reply = to_a.hello(claimed, make_challenge());
  ASSERT_TRUE(a_reply && a_reply->has_hello_reply());

  RawPeer to_b;
  ASSERT_TRUE(to_b.connect(node_b.port()));
  auto b_reply = to_b.hello(claimed, a_reply->hello_reply().challenge());
  ASSERT_TRUE(b_reply && b_reply->has_hello_reply());

  ASSERT_TRUE(to_a.send(auth_proof(b_reply->hello_reply().proof(), b.epoch)));
  auto verdict = to_a.receive();
  ASSERT_TRUE(verdict) << "A answered nothing: it took the relayed proof";
  ASSERT_TRUE(verdict->has_refused());
  EXPECT_EQ(verdict->refused().reason(), "authentication failed");
  EXPECT_EQ(node_a.accepted(), 0u);
}

}  // namespace
}  // namespace tandem::replicator
