#include "control/status.h"

#include <optional>
#include <stdexcept>

#include <fmt/format.h>

namespace tandem::control {

using nlohmann::json;

const char* to_string(Role role) { return role == Role::Primary ? "primary" : "secondary"; }

const char* to_string(PairState state) {
  switch (state) {
    case PairState::Standalone:
      return "STANDALONE";
    case PairState::Syncing:
      return "SYNCING";
    case PairState::Protected:
      return "PROTECTED";
    case PairState::Standby:
      return "STANDBY";
    case PairState::Failed:
      return "FAILED";
    case PairState::Fenced:
      return "FENCED";
  }
  return "UNKNOWN";
}

namespace {

std::optional<Role> role_named(const std::string& name) {
  for (Role r : {Role::Primary, Role::Secondary})
    if (name == to_string(r)) return r;
  return std::nullopt;
}

std::optional<PairState> state_named(const std::string& name) {
  for (PairState s : {PairState::Standalone, PairState::Syncing, PairState::Protected, PairState::Standby,
                      PairState::Failed, PairState::Fenced})
    if (name == to_string(s)) return s;
  return std::nullopt;
}

template <typename T>
void take(const json& object, const char* key, T& out) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const json::exception&) {
    throw std::runtime_error(fmt::format("status field \"{}\" has the wrong type", key));
  }
}

void output_from_json(const json& j, OutputStatus& o) {
  take(j, "held_bytes", o.held_bytes);
  take(j, "held_items", o.held_items);
  take(j, "released_bytes", o.released_bytes);
  take(j, "released_items", o.released_items);
  take(j, "latency_p50_us", o.latency_p50_us);
  take(j, "latency_max_us", o.latency_max_us);
}

json output_to_json(const OutputStatus& o) {
  return {{"held_bytes", o.held_bytes},         {"held_items", o.held_items},
          {"released_bytes", o.released_bytes}, {"released_items", o.released_items},
          {"latency_p50_us", o.latency_p50_us}, {"latency_max_us", o.latency_max_us}};
}

}  // namespace

json status_to_json(const NodeStatus& s) {
  return {
      {"node", s.node_name},
      {"vm_id", s.vm_id},
      {"role", to_string(s.role)},
      {"state", to_string(s.state)},
      {"epoch", s.epoch},
      {"icount", s.icount},
      {"peer_icount", s.peer_icount},
      {"lag_instructions", s.lag_instructions},
      {"lag_ms", s.lag_ms},
      {"log_rate_kb_s", s.log_rate_kb_s},
      {"log_bytes", s.log_bytes},
      {"last_audit_icount", s.last_audit_icount},
      {"last_audit_ok", s.last_audit_ok},
      {"sync",
       {{"rounds", s.sync.rounds}, {"bytes", s.sync.bytes}, {"rate_mb_s", s.sync.rate_mb_s}, {"done", s.sync.done}}},
      {"peer", s.peer},
      {"console", s.console},
      {"last_error", s.last_error},
      {"pid", s.pid},
      {"output", {{"console", output_to_json(s.console_output)}, {"net", output_to_json(s.net_output)}}},
      {"fencing",
       {{"arbiter", s.fencing.arbiter},
        {"lease_ms_left", s.fencing.lease_ms_left},
        {"fenced", s.fencing.fenced},
        {"ack_ms_left", s.fencing.ack_ms_left},
        {"link", s.fencing.link},
        {"heartbeat_path", s.fencing.heartbeat_path},
        {"degraded", s.fencing.degraded},
        {"lease", s.fencing.lease},
        {"promotion", s.fencing.promotion}}},
  };
}

NodeStatus status_from_json(const json& j) {
  if (!j.is_object()) throw std::runtime_error("the status is not a JSON object");
  NodeStatus s;
  take(j, "node", s.node_name);
  take(j, "vm_id", s.vm_id);
  std::string role = to_string(s.role), state = to_string(s.state);
  take(j, "role", role);
  take(j, "state", state);
  if (auto r = role_named(role)) s.role = *r;
  else throw std::runtime_error(fmt::format("unknown role \"{}\"", role));
  if (auto st = state_named(state)) s.state = *st;
  else throw std::runtime_error(fmt::format("unknown state \"{}\"", state));
  take(j, "epoch", s.epoch);
  take(j, "icount", s.icount);
  take(j, "peer_icount", s.peer_icount);
  take(j, "lag_instructions", s.lag_instructions);
  take(j, "lag_ms", s.lag_ms);
  take(j, "log_rate_kb_s", s.log_rate_kb_s);
  take(j, "log_bytes", s.log_bytes);
  take(j, "last_audit_icount", s.last_audit_icount);
  take(j, "last_audit_ok", s.last_audit_ok);
  if (auto it = j.find("sync"); it != j.end() && it->is_object()) {
    take(*it, "rounds", s.sync.rounds);
    take(*it, "bytes", s.sync.bytes);
    take(*it, "rate_mb_s", s.sync.rate_mb_s);
    take(*it, "done", s.sync.done);
  }
  take(j, "peer", s.peer);
  take(j, "console", s.console);
  take(j, "last_error", s.last_error);
  take(j, "pid", s.pid);
  if (auto it = j.find("output"); it != j.end() && it->is_object()) {
    if (auto c = it->find("console"); c != it->end() && c->is_object()) output_from_json(*c, s.console_output);
    if (auto n = it->find("net"); n != it->end() && n->is_object()) output_from_json(*n, s.net_output);
  }
  if (auto it = j.find("fencing"); it != j.end() && it->is_object()) {
    take(*it, "arbiter", s.fencing.arbiter);
    take(*it, "lease_ms_left", s.fencing.lease_ms_left);
    take(*it, "fenced", s.fencing.fenced);
    take(*it, "ack_ms_left", s.fencing.ack_ms_left);
    take(*it, "link", s.fencing.link);
    take(*it, "heartbeat_path", s.fencing.heartbeat_path);
    take(*it, "degraded", s.fencing.degraded);
    take(*it, "lease", s.fencing.lease);
    take(*it, "promotion", s.fencing.promotion);
  }
  return s;
}

}  // namespace tandem::control
