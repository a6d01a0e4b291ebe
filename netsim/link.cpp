#include "netsim/link.h"

#include <algorithm>
#include <fmt/format.h>
#include <stdexcept>

namespace netsim {

std::string_view to_string(Protocol protocol) { return protocol == Protocol::Tcp ? "tcp" : "udp"; }

nlohmann::json to_json(const DirectionCounters& c) {
  return {{"bytes_in", c.bytes_in},
          {"bytes_out", c.bytes_out},
          {"packets_in", c.packets_in},
          {"packets_out", c.packets_out},
          {"dropped_packets", c.dropped_packets},
          {"dropped_bytes", c.dropped_bytes},
          {"duplicated", c.duplicated},
          {"reordered", c.reordered},
          {"corrupted", c.corrupted},
          {"send_errors", c.send_errors}};
}

nlohmann::json to_json(const LinkStats& s) {
  nlohmann::json faults = nlohmann::json::array();
  for (const auto& f : s.faults) {
    nlohmann::json j = to_json(f.spec);
    j["id"] = f.id;
    j["state"] = f.state;
    if (!f.tag.empty()) j["tag"] = f.tag;
    faults.push_back(std::move(j));
  }
  return {{"name", s.name},
          {"protocol", std::string(to_string(s.protocol))},
          {"listen", s.listen},
          {"target", s.target},
          {"up", to_json(s.up)},
          {"down", to_json(s.down)},
          {"connections",
           {{"accepted", s.connections_accepted},
            {"active", s.connections_active},
            {"refused", s.connections_refused},
            {"reset", s.connections_reset},
            {"connect_failures", s.connect_failures}}},
          {"faults", faults}};
}

Link::Link(asio::io_context& io, LinkConfig config, uint64_t simulator_seed, EventLog& events)
    : io_(io), config_(std::move(config)), events_(events), seed_(0) {
  reseed(simulator_seed);
}

Link::~Link() = default;

void Link::reseed(uint64_t simulator_seed) {
  seed_ = config_.seed ? *config_.seed : derive_seed(simulator_seed, config_.name);
  reseeded();
}

uint64_t Link::stream_seed(Direction d, uint64_t stream) const {
  return derive_seed(seed_, "stream", d == Direction::Down ? 2 : 1, stream);
}

void Link::emit(const std::string& event, nlohmann::json fields) {
  fields["link"] = config_.name;
  events_.emit(event, std::move(fields));
}

uint64_t Link::add_fault(const FaultSpec& spec, const std::string& tag) {
  const bool udp = config_.protocol == Protocol::Udp;
  switch (spec.kind) {
    case FaultKind::Loss:
    case FaultKind::BurstLoss:
    case FaultKind::Duplicate:
    case FaultKind::Reorder:
      if (!udp)
        throw std::invalid_argument(fmt::format(
            "fault '{}' applies to UDP links; '{}' is TCP (use stall or partition to stop a TCP stream)",
            to_string(spec.kind), config_.name));
      break;
    case FaultKind::Stall:
    case FaultKind::Slice:
    case FaultKind::Reset:
      if (udp)
        throw std::invalid_argument(
            fmt::format("fault '{}' applies to TCP links; '{}' is UDP", to_string(spec.kind), config_.name));
      break;
    default:
      break;
  }
  // Same kind, direction and tag: the new fault replaces the old one.
  clear_faults(spec.kind, spec.direction, tag);

  auto entry = std::make_unique<Entry>();
  entry->id = next_id_++;
  entry->spec = spec;
  entry->tag = tag;
  entry->bytes_baseline = bytes_in_for(spec.direction);
  entry->messages_baseline = messages_in_for(spec.direction);
  Entry& e = *entry;
  entries_.push_back(std::move(entry));
  nlohmann::json fields = to_json(spec);
  fields["id"] = e.id;
  if (!tag.empty()) fields["tag"] = tag;
  emit("fault_set", std::move(fields));
  schedule(e);
  return e.id;
}

void Link::schedule(Entry& e) {
  const Schedule& s = e.spec.schedule;
  if (s.start_after.count() > 0) {
    e.phase_timer = std::make_unique<asio::steady_timer>(io_);
    e.phase_timer->expires_after(s.start_after);
    e.phase_timer->async_wait([this, id = e.id](boost::system::error_code ec) {
      if (!ec) activate(id);
    });
    return;
  }
  if (s.after_bytes > 0 || s.after_messages > 0) {
    triggers_pending_ = true;
    return;
  }
  activate(e.id);
}

void Link::activate(uint64_t id) {
  Entry* e = find(id);
  if (!e || e->state != EntryState::Pending) return;
  e->state = EntryState::Active;
  emit("fault_active", {{"id", id}, {"fault", std::string(to_string(e->spec.kind))},
                        {"direction", std::string(to_string(e->spec.direction))}});
  const Schedule& s = e->spec.schedule;
  if (s.duration.count() > 0) {
    e->expiry_timer = std::make_unique<asio::steady_timer>(io_);
    e->expiry_timer->expires_after(s.duration);
    e->expiry_timer->async_wait([this, id](boost::system::error_code ec) {
      if (!ec) expire(id);
    });
  }
  if (s.flapping()) {
    if (!e->phase_timer) e->phase_timer = std::make_unique<asio::steady_timer>(io_);
    e->phase_timer->expires_after(s.flap_on);
    e->phase_timer->async_wait([this, id](boost::system::error_code ec) {
      if (!ec) flap(id, false);
    });
  }
  recompute();
}

void Link::flap(uint64_t id, bool on) {
  Entry* e = find(id);
  if (!e) return;
  e->state = on ? EntryState::Active : EntryState::Idle;
  emit(on ? "fault_active" : "fault_idle", {{"id", id}, {"fault", std::string(to_string(e->spec.kind))},
                                           {"direction", std::string(to_string(e->spec.direction))}});
  // Phases are chained from the timer's previous expiry, not from "now", so a loaded
  // machine does not make the flapping period drift.
  e->phase_timer->expires_at(e->phase_timer->expiry() + (on ? e->spec.schedule.flap_on : e->spec.schedule.flap_off));
  e->phase_timer->async_wait([this, id, on](boost::system::error_code ec) {
    if (!ec) flap(id, !on);
  });
  recompute();
}

void Link::expire(uint64_t id) {
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const auto& e) { return e->id == id; });
  if (it == entries_.end()) return;
  emit("fault_cleared", {{"id", id}, {"fault", std::string(to_string((*it)->spec.kind))},
                         {"direction", std::string(to_string((*it)->spec.direction))}, {"reason", "expired"}});
  entries_.erase(it);  // the timers' destructors cancel their pending waits
  recompute();
}

size_t Link::clear_faults(std::optional<FaultKind> kind, std::optional<Direction> direction,
                          std::optional<std::string> tag) {
  size_t removed = 0;
  for (auto it = entries_.begin(); it != entries_.end();) {
    const Entry& e = **it;
    const bool match = (!kind || e.spec.kind == *kind) && (!direction || e.spec.direction == *direction) &&
                       (!tag || e.tag == *tag);
    if (!match) {
      ++it;
      continue;
    }
    emit("fault_cleared", {{"id", e.id}, {"fault", std::string(to_string(e.spec.kind))},
                           {"direction", std::string(to_string(e.spec.direction))}, {"reason", "cleared"}});
    it = entries_.erase(it);
    ++removed;
  }
  if (removed) recompute();
  return removed;
}

std::vector<FaultInfo> Link::faults() const {
  std::vector<FaultInfo> out;
  for (const auto& e : entries_) out.push_back({e->id, e->spec, e->tag, std::string(state_name(e->state))});
  return out;
}

std::string_view Link::state_name(EntryState s) {
  switch (s) {
    case EntryState::Pending: return "pending";
    case EntryState::Active: return "active";
    case EntryState::Idle: return "idle";
  }
  return "?";
}

Link::Entry* Link::find(uint64_t id) {
  for (auto& e : entries_) {
    if (e->id == id) return e.get();
  }
  return nullptr;
}

uint64_t Link::bytes_in_for(Direction d) const {
  uint64_t total = 0;
  if (covers(d, Direction::Up)) total += up_.bytes_in.load(std::memory_order_relaxed);
  if (covers(d, Direction::Down)) total += down_.bytes_in.load(std::memory_order_relaxed);
  return total;
}

uint64_t Link::messages_in_for(Direction d) const {
  if (config_.protocol == Protocol::Tcp) return connections_seen_;
  uint64_t total = 0;
  if (covers(d, Direction::Up)) total += datagrams_up_;
  if (covers(d, Direction::Down)) total += datagrams_down_;
  return total;
}

void Link::count_in(Direction d, uint64_t bytes, uint64_t packets) {
  AtomicCounters& c = counters(d);
  c.add(c.bytes_in, bytes);
  c.add(c.packets_in, packets);
  if (config_.protocol == Protocol::Udp) (d == Direction::Down ? datagrams_down_ : datagrams_up_) += packets;
  if (triggers_pending_) check_triggers();
}

void Link::count_message() {
  ++connections_seen_;
  if (triggers_pending_) check_triggers();
}

void Link::check_triggers() {
  bool still_pending = false;
  std::vector<uint64_t> fire;
  for (const auto& e : entries_) {
    const Schedule& s = e->spec.schedule;
    if (e->state != EntryState::Pending || (s.after_bytes == 0 && s.after_messages == 0)) continue;
    // start_after and a count trigger together: the timer starts it; counts are ignored.
    if (s.start_after.count() > 0) continue;
    const bool bytes_met = s.after_bytes > 0 && bytes_in_for(e->spec.direction) - e->bytes_baseline >= s.after_bytes;
    const bool messages_met =
        s.after_messages > 0 && messages_in_for(e->spec.direction) - e->messages_baseline >= s.after_messages;
    if (bytes_met || messages_met) fire.push_back(e->id);
    else still_pending = true;
  }
  triggers_pending_ = still_pending;
  for (uint64_t id : fire) activate(id);
}

void Link::recompute() {
  LinkPolicy next;
  for (const auto& e : entries_) {
    if (e->state == EntryState::Active) apply_fault(next, e->spec);
  }
  const LinkPolicy before = policy_;
  policy_ = next;
  policy_changed(before);
}

LinkStats Link::stats() const {
  auto snap = [](const AtomicCounters& a) {
    DirectionCounters c;
    c.bytes_in = a.bytes_in.load();
    c.bytes_out = a.bytes_out.load();
    c.packets_in = a.packets_in.load();
    c.packets_out = a.packets_out.load();
    c.dropped_packets = a.dropped_packets.load();
    c.dropped_bytes = a.dropped_bytes.load();
    c.duplicated = a.duplicated.load();
    c.reordered = a.reordered.load();
    c.corrupted = a.corrupted.load();
    c.send_errors = a.send_errors.load();
    return c;
  };
  LinkStats s;
  s.name = config_.name;
  s.protocol = config_.protocol;
  s.listen = fmt::format("{}:{}", config_.listen_host, listen_port());
  s.target = fmt::format("{}:{}", config_.target_host, config_.target_port);
  s.up = snap(up_);
  s.down = snap(down_);
  s.connections_accepted = connections_accepted_.load();
  s.connections_active = connections_active_.load();
  s.connections_refused = connections_refused_.load();
  s.connections_reset = connections_reset_.load();
  s.connect_failures = connect_failures_.load();
  s.faults = faults();
  return s;
}

}  // namespace netsim
