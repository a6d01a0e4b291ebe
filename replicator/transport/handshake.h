#pragma once
// The link handshake as a state machine over messages, with no socket and no thread: a
// transport (TCP today, RDMA later) feeds it the peer's envelopes until it is authenticated,
// sends what it answers and acts on the outcome of each step. docs/replication-link.md
// "Handshake"; the proofs are in auth.h.
//
//   initiator                                      acceptor
//     start() -> Hello                       ->
//                                            <-    on_message(Hello) -> HelloReply (proof_A)
//     on_message(HelloReply) -> AuthProof    ->
//     (authenticated)                              on_message(AuthProof) (authenticated)
#include <cstdint>
#include <optional>
#include <set>
#include <string>

#include "common/result.h"
#include "replicator/transport/auth.h"
#include "replicator/transport/link.h"

namespace tandem::replicator {

inline constexpr size_t kMaxNameBytes = 256;  // vm_id and node names

// The challenges the acceptors of one transport issued and still wait on: a Hello that carries
// one of them is a reflection and is refused. Shared by the handshakes of one transport, used
// from one thread (the transport's I/O thread).
class IssuedChallenges {
 public:
  void add(const std::string& challenge) { challenges_.insert(challenge); }
  void remove(const std::string& challenge) { challenges_.erase(challenge); }
  bool contains(const std::string& challenge) const { return challenges_.count(challenge) != 0; }
  size_t size() const { return challenges_.size(); }

 private:
  std::set<std::string> challenges_;
};

class Handshake {
 public:
  enum class Side { kInitiator, kAcceptor };

  enum class Outcome {
    kContinue,       // send `reply` (if any) and wait for the peer's next message
    kAuthenticated,  // send `reply` (if any): the peer is authenticated, peer() is final
    kRefused,        // this side refuses the peer: send `reply` (a Refused), flush it, close
    kFailed,         // the peer refused this side: close at once
  };

  struct Step {
    Outcome outcome = Outcome::kContinue;
    std::optional<wire::Envelope> reply;  // its epoch is this side's
    std::string reason;                   // kRefused, kFailed: what to log (may say more than the peer is told)
  };

  // `issued` must outlive the handshake (or its finish()); `me` is copied.
  Handshake(const LinkIdentity& me, Side side, IssuedChallenges& issued);

  // The initiator's Hello; nothing for an acceptor, which waits for a Hello.
  Step start();
  // The peer's next message; only while not done().
  Step on_message(const wire::Envelope& envelope);
  // Forgets the challenge this side issued (the reflection check). Call once the handshake
  // ends, however it ends; idempotent.
  void finish();

  bool done() const { return state_ == State::kAuthenticated || state_ == State::kOver; }
  bool authenticated() const { return state_ == State::kAuthenticated; }
  Side side() const { return side_; }
  // What the peer announced (name, epoch, role; no address): final once authenticated().
  const PeerInfo& peer() const { return peer_; }
  // This side's frame keys once authenticated(): sealing what it sends, opening what it
  // receives (auth.h). nullopt when both sides agreed to run in cleartext.
  struct FrameKeyPair {
    std::string send, receive;
  };
  std::optional<FrameKeyPair> frame_keys() const;

 private:
  enum class State { kIdle, kAwaitHello, kAwaitHelloReply, kAwaitAuthProof, kAuthenticated, kOver };

  Step on_hello(const wire::Envelope& envelope);
  Step on_hello_reply(const wire::Envelope& envelope);
  Step on_auth_proof(const wire::Envelope& envelope);
  // Checks what both Hello and HelloReply carry; an Invalid error says why it is refused.
  Result<void> check_announcement(uint32_t version, const std::string& vm_id, int role, const std::string& challenge,
                                  const std::string& node_name, bool cleartext) const;
  // A refusal that is not an answer to the expected message: the peer's own Refused ends
  // the handshake (kFailed), anything else is refused.
  Step unexpected(const wire::Envelope& envelope, const char* expected);
  Step refuse(const std::string& reason, const std::string& log_reason = "");
  Step send(wire::Envelope envelope, Outcome outcome = Outcome::kContinue) const;
  // The handshake as this side saw it, which both proofs cover.
  HandshakeTranscript transcript() const;

  const LinkIdentity me_;  // a copy: the handshake may outlive the caller's identity
  const std::string key_;  // the link key (auth.h link_key), never the PSK itself
  const Side side_;
  IssuedChallenges& issued_;
  State state_ = State::kIdle;
  std::string my_challenge_;
  std::string peer_challenge_;
  bool registered_ = false;  // my_challenge_ is in issued_
  PeerInfo peer_;
};

}  // namespace tandem::replicator
