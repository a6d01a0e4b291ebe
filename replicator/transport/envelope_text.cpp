#include "replicator/transport/envelope_text.h"

namespace tandem::replicator {

std::string printable(std::string_view text, size_t max) {
  std::string out;
  for (char c : text.substr(0, max)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  if (text.size() > max) out += "...";
  return out;
}

const char* body_name(const wire::Envelope& envelope) {
  switch (envelope.body_case()) {
    case wire::Envelope::kHello: return "Hello";
    case wire::Envelope::kHelloReply: return "HelloReply";
    case wire::Envelope::kAuthProof: return "AuthProof";
    case wire::Envelope::kRefused: return "Refused";
    case wire::Envelope::kSyncChunk: return "SyncChunk";
    case wire::Envelope::kSyncResult: return "SyncResult";
    case wire::Envelope::kSyncAck: return "SyncAck";
    case wire::Envelope::kBatch: return "LogBatch";
    case wire::Envelope::kAck: return "Ack";
    case wire::Envelope::kHeartbeat: return "Heartbeat";
    case wire::Envelope::kDivergence: return "DivergenceReport";
    case wire::Envelope::kHandover: return "Handover";
    case wire::Envelope::BODY_NOT_SET: return "an envelope without a body";
  }
  return "an unknown message";
}

}  // namespace tandem::replicator
