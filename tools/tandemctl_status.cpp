#include "tools/tandemctl_status.h"

#include <fmt/format.h>

#include <string_view>
#include <utility>

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
  // The output gate per channel (a primary's; a secondary releases nothing).
  if (s.role == control::Role::Primary) {
    for (const auto& [name, o] : {std::pair{"console", &s.console_output}, std::pair{"net", &s.net_output}}) {
      const char* unit = std::string_view(name) == "net" ? "frames" : "writes";
      const std::string latency = o->latency_p50_us < 0 ? "-"
                                  : fmt::format("p50 {:.0f} µs max {:.0f} µs", o->latency_p50_us, o->latency_max_us);
      out += fmt::format("output {:<7}  held {} ({} {})  released {} ({} {})  commit latency {}\n", name,
                         human_bytes(o->held_bytes), o->held_items, unit, human_bytes(o->released_bytes),
                         o->released_items, unit, latency);
    }
  }
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
