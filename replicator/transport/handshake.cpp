#include "replicator/transport/handshake.h"

#include "replicator/transport/envelope_text.h"

namespace tandem::replicator {

namespace {

std::string role_pair_refusal(wire::Role initiator, wire::Role acceptor) {
  return "role pair " + wire::Role_Name(initiator) + " -> " + wire::Role_Name(acceptor) +
         " not allowed (only a primary opens a link, to a secondary or a primary)";
}

}  // namespace

Handshake::Handshake(const LinkIdentity& me, Side side, IssuedChallenges& issued)
    : me_(me), key_(link_key(me.psk, me.vm_id)), side_(side), issued_(issued) {}

Handshake::Step Handshake::start() {
  if (side_ == Side::kAcceptor) {
    state_ = State::kAwaitHello;
    return {};
  }
  my_challenge_ = make_challenge();
  wire::Envelope envelope;
  auto* hello = envelope.mutable_hello();
  hello->set_protocol_version(kProtocolVersion);
  hello->set_vm_id(me_.vm_id);
  hello->set_epoch(me_.epoch);
  hello->set_role(me_.role);
  hello->set_challenge(my_challenge_);
  hello->set_node_name(me_.node_name);
  hello->set_cleartext(!me_.encryption);
  state_ = State::kAwaitHelloReply;
  return send(std::move(envelope));
}

Handshake::Step Handshake::on_message(const wire::Envelope& envelope) {
  switch (state_) {
    case State::kAwaitHello: return on_hello(envelope);
    case State::kAwaitHelloReply: return on_hello_reply(envelope);
    case State::kAwaitAuthProof: return on_auth_proof(envelope);
    case State::kIdle:
    case State::kAuthenticated:
    case State::kOver: break;
  }
  state_ = State::kOver;
  return {Outcome::kFailed, std::nullopt, std::string("protocol error: ") + body_name(envelope) + " out of turn"};
}

void Handshake::finish() {
  if (registered_) issued_.remove(my_challenge_);
  registered_ = false;
}

Result<void> Handshake::check_announcement(uint32_t version, const std::string& vm_id, int role,
                                           const std::string& challenge, const std::string& node_name, bool cleartext) const {
  const auto invalid = [](std::string why) { return Error{ErrorKind::Invalid, std::move(why)}; };
  if (version != kProtocolVersion) {
    return invalid("protocol version " + std::to_string(version) + " not supported (this side speaks " +
           std::to_string(kProtocolVersion) + ")");
  }
  if (vm_id != me_.vm_id) {
    return invalid("vm_id mismatch (peer '" + printable(vm_id) + "', this side '" + printable(me_.vm_id) + "')");
  }
  if (!wire::Role_IsValid(role)) return invalid("unknown role " + std::to_string(role));
  if (challenge.size() != kChallengeBytes) {
    return invalid("challenge of " + std::to_string(challenge.size()) + " bytes (expected " +
                   std::to_string(kChallengeBytes) + ")");
  }
  if (node_name.size() > kMaxNameBytes) return invalid("node name longer than " + std::to_string(kMaxNameBytes) + " bytes");
  if (cleartext == me_.encryption) {
    return invalid(std::string("link encryption is ") +
                   (me_.encryption ? "off on the peer and on here" : "on on the peer and off here") +
                   ": both sides must set the same [pair] encryption");
  }
  return {};
}

namespace {
// What a Refused tells a peer that has proved nothing yet: never this side's vm id (a scanner
// would learn which VM listens here); the log keeps the whole reason.
std::string told_to_peer(const std::string& reason) {
  return reason.rfind("vm_id mismatch", 0) == 0 ? std::string("vm_id mismatch") : reason;
}
}  // namespace

Handshake::Step Handshake::on_hello(const wire::Envelope& envelope) {
  if (!envelope.has_hello()) return unexpected(envelope, "Hello");
  const auto& hello = envelope.hello();
  if (auto announced = check_announcement(hello.protocol_version(), hello.vm_id(), hello.role(), hello.challenge(),
                                          hello.node_name(), hello.cleartext());
      !announced) {
    return refuse(told_to_peer(announced.error().message), announced.error().message);
  }
  // A challenge this transport issued, sent back to it. The proofs bind the direction, so this
  // would not yield a useful proof any more; it is refused all the same.
  if (issued_.contains(hello.challenge())) return refuse("reflected challenge");
  // Before any proof is computed: a peer in a role that may not open this link gets nothing.
  if (!role_pair_allowed(hello.role(), me_.role)) return refuse(role_pair_refusal(hello.role(), me_.role));
  peer_.node_name = hello.node_name();
  peer_.epoch = hello.epoch();
  peer_.role = hello.role();
  peer_challenge_ = hello.challenge();
  my_challenge_ = make_challenge();
  issued_.add(my_challenge_);
  registered_ = true;

  wire::Envelope reply_envelope;
  auto* reply = reply_envelope.mutable_hello_reply();
  reply->set_protocol_version(kProtocolVersion);
  reply->set_vm_id(me_.vm_id);
  reply->set_epoch(me_.epoch);
  reply->set_role(me_.role);
  reply->set_challenge(my_challenge_);
  reply->set_proof(compute_proof(key_, ProofDirection::kFromAcceptor, transcript()));
  reply->set_node_name(me_.node_name);
  reply->set_cleartext(!me_.encryption);
  state_ = State::kAwaitAuthProof;
  return send(std::move(reply_envelope));
}

Handshake::Step Handshake::on_auth_proof(const wire::Envelope& envelope) {
  if (!envelope.has_auth_proof()) return unexpected(envelope, "AuthProof");
  const auto expected = compute_proof(key_, ProofDirection::kFromInitiator, transcript());
  if (!proofs_equal(expected, envelope.auth_proof().proof())) {
    // The peer's proof covers our fresh challenge: a wrong key, a replayed or a forged proof.
    return refuse("authentication failed", "wrong PSK (or a replayed/forged proof)");
  }
  state_ = State::kAuthenticated;
  return {Outcome::kAuthenticated, std::nullopt, ""};
}

Handshake::Step Handshake::on_hello_reply(const wire::Envelope& envelope) {
  if (!envelope.has_hello_reply()) return unexpected(envelope, "HelloReply");
  const auto& reply = envelope.hello_reply();
  if (auto announced = check_announcement(reply.protocol_version(), reply.vm_id(), reply.role(), reply.challenge(),
                                          reply.node_name(), reply.cleartext());
      !announced) {
    return refuse(told_to_peer(announced.error().message), announced.error().message);
  }
  if (reply.challenge() == my_challenge_) return refuse("reflected challenge");
  if (!role_pair_allowed(me_.role, reply.role())) return refuse(role_pair_refusal(me_.role, reply.role()));
  peer_.node_name = reply.node_name();
  peer_.epoch = reply.epoch();
  peer_.role = reply.role();
  peer_challenge_ = reply.challenge();
  const auto expected = compute_proof(key_, ProofDirection::kFromAcceptor, transcript());
  if (!proofs_equal(expected, reply.proof())) {
    return refuse("authentication failed", "wrong PSK: the peer's proof does not verify");
  }
  wire::Envelope proof_envelope;
  proof_envelope.mutable_auth_proof()->set_proof(compute_proof(key_, ProofDirection::kFromInitiator, transcript()));
  state_ = State::kAuthenticated;
  return send(std::move(proof_envelope), Outcome::kAuthenticated);
}

Handshake::Step Handshake::unexpected(const wire::Envelope& envelope, const char* expected) {
  if (envelope.has_refused()) {
    state_ = State::kOver;
    return {Outcome::kFailed, std::nullopt, "refused by peer: " + printable(envelope.refused().reason(), 200)};
  }
  return refuse(std::string("expected ") + expected + ", got " + body_name(envelope));
}

Handshake::Step Handshake::refuse(const std::string& reason, const std::string& log_reason) {
  state_ = State::kOver;
  wire::Envelope envelope;
  envelope.mutable_refused()->set_reason(reason);
  Step step = send(std::move(envelope), Outcome::kRefused);
  step.reason = log_reason.empty() ? reason : log_reason;
  return step;
}

Handshake::Step Handshake::send(wire::Envelope envelope, Outcome outcome) const {
  envelope.set_epoch(me_.epoch);
  return {outcome, std::move(envelope), ""};
}

std::optional<Handshake::FrameKeyPair> Handshake::frame_keys() const {
  if (!authenticated() || !me_.encryption) return std::nullopt;
  FrameKeys keys = derive_frame_keys(key_, transcript());
  if (side_ == Side::kInitiator) return FrameKeyPair{keys.initiator_to_acceptor, keys.acceptor_to_initiator};
  return FrameKeyPair{keys.acceptor_to_initiator, keys.initiator_to_acceptor};
}

HandshakeTranscript Handshake::transcript() const {
  // Both sides' cleartext flags are equal once check_announcement passed.
  const Announcement mine{me_.role, me_.epoch, my_challenge_, me_.node_name, !me_.encryption};
  const Announcement theirs{peer_.role, peer_.epoch, peer_challenge_, peer_.node_name, !me_.encryption};
  const bool acceptor = side_ == Side::kAcceptor;
  return {kProtocolVersion, me_.vm_id, acceptor ? theirs : mine, acceptor ? mine : theirs};
}

}  // namespace tandem::replicator
