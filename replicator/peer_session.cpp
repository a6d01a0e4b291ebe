#include "replicator/peer_session.h"

namespace tandem::replicator {

void PeerSession::send(const std::shared_ptr<Link>& l, wire::Envelope e) const {
  if (!l) return;
  e.set_epoch(epoch_());
  l->send(std::move(e));
}

void PeerSession::send_ack(const std::shared_ptr<Link>& l, const StreamBatchSource& s, uint64_t executed) const {
  wire::Envelope ack;
  ack.mutable_ack()->set_received_icount(s.complete_to());
  ack.mutable_ack()->set_executed_icount(executed);
  ack.mutable_ack()->set_batch_sequence(s.last_sequence());
  ack.mutable_ack()->set_promotion_holdoff_ms(static_cast<uint32_t>(promotion_holdoff_.count()));
  send(l, std::move(ack));
}

void PeerSession::refuse(const std::shared_ptr<Link>& l, const std::string& reason) const {
  if (!l) return;
  wire::Envelope e;
  e.mutable_refused()->set_reason(reason);
  send(l, std::move(e));
  l->close(reason);
}

void PeerSession::send_heartbeat(const std::shared_ptr<Link>& l, uint64_t sent_ns, uint64_t icount,
                                 uint64_t echo_ns) const {
  wire::Envelope hb;
  hb.mutable_heartbeat()->set_sent_ns(sent_ns);
  hb.mutable_heartbeat()->set_icount(icount);
  if (echo_ns != 0) hb.mutable_heartbeat()->set_echo_ns(echo_ns);
  send(l, std::move(hb));
}

void PeerSession::send_divergence(const std::shared_ptr<Link>& l, uint64_t icount, const std::string& what,
                                  uint64_t expected, uint64_t actual) const {
  wire::Envelope e;
  e.mutable_divergence()->set_icount(icount);
  e.mutable_divergence()->set_what(what);
  if (expected != 0) e.mutable_divergence()->set_expected(expected);
  if (actual != 0) e.mutable_divergence()->set_actual(actual);
  send(l, std::move(e));
}

void PeerSession::send_sync_ack(const std::shared_ptr<Link>& l, uint64_t sequence, uint64_t bytes_applied) const {
  wire::Envelope ack;
  ack.mutable_sync_ack()->set_sequence(sequence);
  ack.mutable_sync_ack()->set_bytes_applied(bytes_applied);
  send(l, std::move(ack));
}

void PeerSession::send_sync_result(const std::shared_ptr<Link>& l, bool ok, uint64_t state_hash,
                                   const std::string& error) const {
  wire::Envelope e;
  e.mutable_sync_result()->set_ok(ok);
  if (ok) {
    e.mutable_sync_result()->set_state_hash(state_hash);
  } else {
    e.mutable_sync_result()->set_error(error);
  }
  send(l, std::move(e));
}

}  // namespace tandem::replicator
