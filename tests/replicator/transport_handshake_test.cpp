// The link's pieces without a socket (or with a socketpair only): the Handshake state
// machine played between in-memory peers, the EpochFilter and the SendQueue.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "replicator/transport/epoch_filter.h"
#include "replicator/transport/handshake.h"
#include "replicator/transport/send_queue.h"
#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using namespace testing;
using Outcome = Handshake::Outcome;
using Side = Handshake::Side;

// One in-memory handshake between `initiator` and `acceptor`: the two outcomes.
struct Played {
  Handshake::Step initiator_last;
  Handshake::Step acceptor_last;
};

Played play(Handshake& initiator, Handshake& acceptor) {
  Played p;
  EXPECT_EQ(acceptor.start().outcome, Outcome::kContinue);
  auto hello = initiator.start();
  EXPECT_TRUE(hello.reply && hello.reply->has_hello());
  p.acceptor_last = acceptor.on_message(*hello.reply);
  if (p.acceptor_last.outcome != Outcome::kContinue) return p;
  p.initiator_last = initiator.on_message(*p.acceptor_last.reply);
  if (p.initiator_last.outcome != Outcome::kAuthenticated) return p;
  p.acceptor_last = acceptor.on_message(*p.initiator_last.reply);
  return p;
}

TEST(Handshake, PrimaryAndSecondaryAuthenticateEachOther) {
  IssuedChallenges issued_a, issued_b;
  const auto a = identity(wire::PRIMARY, 7);
  const auto b = identity(wire::SECONDARY, 3);
  Handshake initiator(a, Side::kInitiator, issued_a);
  Handshake acceptor(b, Side::kAcceptor, issued_b);
  auto p = play(initiator, acceptor);
  EXPECT_EQ(p.initiator_last.outcome, Outcome::kAuthenticated);
  EXPECT_EQ(p.acceptor_last.outcome, Outcome::kAuthenticated);
  EXPECT_TRUE(initiator.authenticated() && acceptor.authenticated());
  EXPECT_EQ(initiator.peer().role, wire::SECONDARY);
  EXPECT_EQ(initiator.peer().epoch, 3u);
  EXPECT_EQ(initiator.peer().node_name, "node-b");
  EXPECT_EQ(acceptor.peer().role, wire::PRIMARY);
  EXPECT_EQ(acceptor.peer().epoch, 7u);
  EXPECT_EQ(acceptor.peer().node_name, "node-a");
  EXPECT_EQ(p.initiator_last.reply->epoch(), 7u);  // handshake messages carry the sender's epoch
  // The acceptor's challenge is remembered until the handshake is over.
  EXPECT_EQ(issued_b.size(), 1u);
  acceptor.finish();
  acceptor.finish();
  EXPECT_EQ(issued_b.size(), 0u);
}

TEST(Handshake, WrongKeyIsRefusedOnBothSides) {
  IssuedChallenges issued_a, issued_b;
  const auto a = identity(wire::PRIMARY, 1, "a-different-key-of-sufficient-length");
  const auto b = identity(wire::SECONDARY, 1);
  Handshake initiator(a, Side::kInitiator, issued_a);
  Handshake acceptor(b, Side::kAcceptor, issued_b);
  auto p = play(initiator, acceptor);
  EXPECT_EQ(p.initiator_last.outcome, Outcome::kRefused);
  EXPECT_EQ(p.initiator_last.reason, "wrong PSK: the peer's proof does not verify");
  ASSERT_TRUE(p.initiator_last.reply && p.initiator_last.reply->has_refused());
  EXPECT_EQ(p.initiator_last.reply->refused().reason(), "authentication failed");
  EXPECT_TRUE(initiator.done());
  EXPECT_FALSE(initiator.authenticated());
  // The acceptor hears the refusal: its side fails with the peer's reason.
  auto heard = acceptor.on_message(*p.initiator_last.reply);
  EXPECT_EQ(heard.outcome, Outcome::kFailed);
  EXPECT_EQ(heard.reason, "refused by peer: authentication failed");
  EXPECT_FALSE(heard.reply);
}

TEST(Handshake, ProofRelayedBetweenTwoAcceptorsIsRefused) {
  // issue 20 finding 1, without sockets: B's challenge sent to A, A's proof handed to B.
  IssuedChallenges issued_a, issued_b, issued_attacker;
  const auto a = identity(wire::PRIMARY, 7);
  const auto b = identity(wire::SECONDARY, 3);
  auto claimed = a;
  claimed.psk = "the-attacker-does-not-have-the-key";
  Handshake node_a(a, Side::kAcceptor, issued_a);
  Handshake node_b(b, Side::kAcceptor, issued_b);
  node_a.start();
  node_b.start();
  Handshake attacker(claimed, Side::kInitiator, issued_attacker);
  auto hello = attacker.start();
  auto b_reply = node_b.on_message(*hello.reply);
  ASSERT_EQ(b_reply.outcome, Outcome::kContinue);
  auto relayed_hello = *hello.reply;
  relayed_hello.mutable_hello()->set_challenge(b_reply.reply->hello_reply().challenge());
  auto a_reply = node_a.on_message(relayed_hello);
  ASSERT_EQ(a_reply.outcome, Outcome::kContinue);
  wire::Envelope proof;
  proof.mutable_auth_proof()->set_proof(a_reply.reply->hello_reply().proof());
  auto verdict = node_b.on_message(proof);
  EXPECT_EQ(verdict.outcome, Outcome::kRefused);
  EXPECT_EQ(verdict.reason, "wrong PSK (or a replayed/forged proof)");
  EXPECT_FALSE(node_b.authenticated());
}

TEST(Handshake, RolePairIsCheckedBeforeAnyProof) {
  IssuedChallenges issued_a, issued_b;
  Handshake initiator(identity(wire::SECONDARY), Side::kInitiator, issued_a);
  Handshake acceptor(identity(wire::SECONDARY), Side::kAcceptor, issued_b);
  auto p = play(initiator, acceptor);
  EXPECT_EQ(p.acceptor_last.outcome, Outcome::kRefused);
  ASSERT_TRUE(p.acceptor_last.reply && p.acceptor_last.reply->has_refused());  // no HelloReply, no proof
  EXPECT_EQ(p.acceptor_last.reason.rfind("role pair SECONDARY -> SECONDARY not allowed", 0), 0u);
  EXPECT_EQ(issued_b.size(), 0u);
  // PRIMARY -> PRIMARY (a fenced primary knocking at the live one) authenticates.
  Handshake fenced(identity(wire::PRIMARY, 2), Side::kInitiator, issued_a);
  Handshake live(identity(wire::PRIMARY, 3), Side::kAcceptor, issued_b);
  EXPECT_EQ(play(fenced, live).acceptor_last.outcome, Outcome::kAuthenticated);
}

TEST(Handshake, ReflectedChallengeIsRefused) {
  IssuedChallenges issued;
  const auto me = identity(wire::PRIMARY);
  Handshake first(me, Side::kAcceptor, issued);
  first.start();
  Handshake peer(me, Side::kInitiator, issued);
  auto hello = peer.start();
  auto reply = first.on_message(*hello.reply);
  ASSERT_EQ(reply.outcome, Outcome::kContinue);
  Handshake second(me, Side::kAcceptor, issued);
  second.start();
  auto reflected = *hello.reply;
  reflected.mutable_hello()->set_challenge(reply.reply->hello_reply().challenge());
  auto answer = second.on_message(reflected);
  EXPECT_EQ(answer.outcome, Outcome::kRefused);
  EXPECT_EQ(answer.reason, "reflected challenge");
}

TEST(Handshake, AnnouncementsAreChecked) {
  IssuedChallenges issued;
  const auto me = identity(wire::SECONDARY);
  auto refusal_of = [&](auto mutate) {
    Handshake acceptor(me, Side::kAcceptor, issued);
    acceptor.start();
    IssuedChallenges other;
    Handshake initiator(identity(wire::PRIMARY), Side::kInitiator, other);
    auto hello = *initiator.start().reply;
    mutate(*hello.mutable_hello());
    auto step = acceptor.on_message(hello);
    EXPECT_EQ(step.outcome, Outcome::kRefused);
    return step.reason;
  };
  EXPECT_EQ(refusal_of([](wire::Hello& h) { h.set_protocol_version(2); }),
            "protocol version 2 not supported (this side speaks 4)");
  EXPECT_EQ(refusal_of([](wire::Hello& h) { h.set_vm_id("other"); }),
            "vm_id mismatch (peer 'other', this side 'vm-test')");
  EXPECT_EQ(refusal_of([](wire::Hello& h) { h.set_challenge("tiny"); }), "challenge of 4 bytes (expected 32)");
  EXPECT_EQ(refusal_of([](wire::Hello& h) { h.set_node_name(std::string(300, 'n')); }),
            "node name longer than 256 bytes");
  EXPECT_EQ(refusal_of([](wire::Hello& h) { h.set_cleartext(true); }),
            "link encryption is off on the peer and on here: both sides must set the same [pair] encryption");
  Handshake acceptor(me, Side::kAcceptor, issued);
  acceptor.start();
  auto step = acceptor.on_message(heartbeat(1));
  EXPECT_EQ(step.outcome, Outcome::kRefused);
  EXPECT_EQ(step.reason, "expected Hello, got Heartbeat");
}

TEST(EpochFilter, FloorIsTheHighestOfHandshakeDeliveredAndOwnersEpoch) {
  uint64_t owner = 0;
  EpochFilter filter;
  filter.start(5, [&] { return owner; });
  EXPECT_FALSE(filter.admit(heartbeat(1, 4), "peer"));  // below the handshake epoch
  EXPECT_TRUE(filter.admit(heartbeat(2, 5), "peer"));
  EXPECT_TRUE(filter.admit(heartbeat(3, 7), "peer"));
  EXPECT_FALSE(filter.admit(heartbeat(4, 6), "peer"));  // below the highest delivered
  owner = 9;                                            // this node moved to epoch 9
  EXPECT_FALSE(filter.admit(heartbeat(5, 8), "peer"));
  EXPECT_TRUE(filter.admit(heartbeat(6, 9), "peer"));
  EXPECT_EQ(filter.dropped(), 3u);
  EpochFilter without_owner;
  without_owner.start(2, nullptr);
  EXPECT_TRUE(without_owner.admit(heartbeat(1, 2), "peer"));
  EXPECT_FALSE(without_owner.admit(heartbeat(1, 1), "peer"));
}

OutgoingFrame frame_of(uint64_t icount) { return encode_link_frame(heartbeat(icount, 1)); }

TEST(SendQueue, QueuesForTheWriterAndKeepsTheBacklogBounded) {
  const size_t one = frame_of(1).size();
  SendQueue queue(3 * one);
  EXPECT_EQ(queue.push(frame_of(1), true), SendQueue::Pushed::kQueuedWakeWriter);  // no socket: queued
  EXPECT_EQ(queue.push(frame_of(2), true), SendQueue::Pushed::kQueued);            // the writer is scheduled
  EXPECT_EQ(queue.push(frame_of(3), true), SendQueue::Pushed::kQueued);
  EXPECT_EQ(queue.push(frame_of(4), true), SendQueue::Pushed::kOverBacklog);
  EXPECT_EQ(queue.push(frame_of(5), false), SendQueue::Pushed::kQueued);  // handshake messages are never refused
  EXPECT_EQ(queue.queued_bytes(), 4 * one);
  std::vector<OutgoingFrame> taken;
  ASSERT_TRUE(queue.take(taken));
  EXPECT_EQ(taken.size(), 4u);
  EXPECT_TRUE(queue.empty());
  queue.completed(4 * one, true);
  EXPECT_EQ(queue.queued_bytes(), 0u);
  EXPECT_EQ(queue.bytes_sent(), 4 * one);
  EXPECT_FALSE(queue.take(taken));  // nothing queued: the writer is idle again
  EXPECT_EQ(queue.push(frame_of(6), true), SendQueue::Pushed::kQueuedWakeWriter);
  queue.drop();
  EXPECT_EQ(queue.queued_bytes(), 0u);
  EXPECT_TRUE(queue.empty());
}

TEST(SendQueue, DirectWriteWhenNothingIsQueued) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  SendQueue queue(1 << 20);
  queue.attach_direct(fds[0]);
  auto frame = frame_of(42);
  const std::string expected = std::string(frame.header.begin(), frame.header.end()) + frame.payload;
  EXPECT_EQ(queue.push(std::move(frame), true), SendQueue::Pushed::kOnTheWire);
  EXPECT_EQ(queue.bytes_sent(), expected.size());
  EXPECT_EQ(queue.queued_bytes(), 0u);
  std::string got(expected.size(), '\0');
  ASSERT_EQ(::read(fds[1], got.data(), got.size()), static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, expected);
  // Once the I/O thread has writing to do, frames queue behind it (order is kept).
  queue.detach_direct();
  EXPECT_EQ(queue.push(frame_of(43), true), SendQueue::Pushed::kQueuedWakeWriter);
  queue.attach_direct(fds[0]);
  EXPECT_EQ(queue.push(frame_of(44), true), SendQueue::Pushed::kQueued);
  queue.detach_direct();
  ::close(fds[0]);
  ::close(fds[1]);
}

}  // namespace
}  // namespace tandem::replicator
