#pragma once
// Envelopes and peer-supplied text as they appear in log lines and refusal reasons.
#include <string>
#include <string_view>

#include "proto/replication.pb.h"

namespace tandem::replicator {

// Peer-supplied text made safe for a log line: printable ASCII, at most `max` characters.
std::string printable(std::string_view text, size_t max = 64);

// The name of the envelope's body ("Hello", "LogBatch", ...), for logs and refusals.
const char* body_name(const wire::Envelope& envelope);

}  // namespace tandem::replicator
