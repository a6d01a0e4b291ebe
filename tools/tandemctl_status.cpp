#include "tools/tandemctl_status.h"

#include <fmt/format.h>

namespace tandem::tools {

using control::NodeStatus;
using control::to_string;

namespace {

std::string human_bytes(uint64_t bytes) {
  if (bytes < 1000) return fmt::format("{} B", bytes);
  if (bytes < 1000'000) return fmt::format("{:.1f} KB", bytes / 1e3);
  if (bytes < 1000'000'000) return fmt::format("{:.1f} MB", bytes / 1e6);
  return fmt::format("{:.1f} GB", bytes / 1e9);
}

std::string or_dash(const std::string& s) { return s.empty() ? "-" : s; }

}  // namespace

std::string format_status(const NodeStatus& s) {
  std::string out = fmt::format("node {}  role {}  state {}  epoch {}\n", or_dash(s.node_name), to_string(s.role),
                                to_string(s.state), s.epoch);
  out += fmt::format("icount {}  peer icount {}  lag {} instr ({:.3f} ms)\n", s.icount, s.peer_icount,
                     s.lag_instructions, s.lag_ms);
  const std::string audit = s.last_audit_icount == 0
                                ? "none"
                                : fmt::format("@{} {}", s.last_audit_icount, s.last_audit_ok ? "ok" : "MISMATCH");
  out += fmt::format("log {:.1f} KB/s (total {})  last audit {}\n", s.log_rate_kb_s, human_bytes(s.log_bytes), audit);
  if (s.sync.done) {
    out += fmt::format("sync: done, {} rounds, {} at {:.1f} MB/s\n", s.sync.rounds, human_bytes(s.sync.bytes),
                       s.sync.rate_mb_s);
  } else if (s.sync.rounds > 0 || s.sync.bytes > 0) {
    out += fmt::format("sync: in progress, round {}, {} at {:.1f} MB/s\n", s.sync.rounds, human_bytes(s.sync.bytes),
                       s.sync.rate_mb_s);
  } else {
    out += "sync: none\n";
  }
  out += fmt::format("console {}  peer {}\n", or_dash(s.console), or_dash(s.peer));
  if (!s.fencing.arbiter.empty()) {
    std::string lease = s.fencing.lease_ms_left < 0 ? "no lease" : fmt::format("lease {} ms left", s.fencing.lease_ms_left);
    if (s.fencing.ack_ms_left >= 0) lease += fmt::format(", acks {} ms", s.fencing.ack_ms_left);
    out += fmt::format("fencing: {}  {}{}  link {}  heartbeat path {}{}\n", s.fencing.arbiter, lease,
                       s.fencing.fenced ? "  FENCED (no output)" : "", s.fencing.link, s.fencing.heartbeat_path,
                       s.fencing.degraded ? "  DEGRADED" : "");
    if (!s.fencing.promotion.empty()) out += fmt::format("promotion: {}\n", s.fencing.promotion);
  }
  if (!s.last_error.empty()) out += fmt::format("error: {}\n", s.last_error);
  return out;
}

}  // namespace tandem::tools
