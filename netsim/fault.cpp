#include "netsim/fault.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <fmt/format.h>

namespace netsim {
namespace {

struct KindInfo {
  FaultKind kind;
  std::string_view name;
  std::vector<std::string_view> keys;  // parameters this kind accepts (besides the schedule keys)
};

const std::vector<KindInfo>& kind_table() {
  static const std::vector<KindInfo> table = {
      {FaultKind::Delay, "delay", {"delay", "jitter", "distribution"}},
      {FaultKind::Bandwidth, "bandwidth", {"rate", "burst"}},
      {FaultKind::Loss, "loss", {"probability"}},
      {FaultKind::BurstLoss, "burst_loss", {"p", "r", "bad_loss", "good_loss"}},
      {FaultKind::Stall, "stall", {}},
      {FaultKind::Duplicate, "duplicate", {"probability"}},
      {FaultKind::Reorder, "reorder", {"probability", "gap"}},
      {FaultKind::Corrupt, "corrupt", {"probability"}},
      {FaultKind::Blackhole, "blackhole", {}},
      {FaultKind::Reset, "reset", {}},
      {FaultKind::Refuse, "refuse", {}},
      {FaultKind::Partition, "partition", {}},
      {FaultKind::Flap, "flap", {"on", "off"}},
      {FaultKind::Slice, "slice", {"size", "gap"}},
  };
  return table;
}

constexpr std::array<std::string_view, 6> kScheduleKeys = {"after", "after_bytes", "after_messages",
                                                           "for", "flap_on", "flap_off"};

// Reads typed values out of a ParamValue, producing "<origin>, key '<k>': <problem>" errors.
class Reader {
 public:
  Reader(const std::string& key, const ParamValue& value, std::string& error)
      : key_(key), value_(value), error_(error) {}

  bool fail(const std::string& problem) {
    error_ = fmt::format("{}, key '{}': {}", value_.origin, key_, problem);
    return false;
  }

  bool as_text(std::string& out) {
    if (auto* s = std::get_if<std::string>(&value_.value)) {
      out = *s;
      return true;
    }
    return fail("expected a string");
  }

  bool as_duration(Duration& out) {
    std::string text;
    if (auto* s = std::get_if<std::string>(&value_.value)) {
      text = *s;
    } else if (std::holds_alternative<int64_t>(value_.value) && std::get<int64_t>(value_.value) == 0) {
      out = Duration(0);
      return true;
    } else {
      return fail("expected a duration with a unit, like \"50ms\"");
    }
    std::string problem;
    auto parsed = parse_duration(text, problem);
    if (!parsed) return fail(problem);
    out = *parsed;
    return true;
  }

  bool as_number(double& out) {
    if (auto* i = std::get_if<int64_t>(&value_.value)) {
      out = static_cast<double>(*i);
    } else if (auto* d = std::get_if<double>(&value_.value)) {
      out = *d;
    } else if (auto* s = std::get_if<std::string>(&value_.value)) {
      auto [ptr, ec] = std::from_chars(s->data(), s->data() + s->size(), out);
      if (ec != std::errc() || ptr != s->data() + s->size()) return fail(fmt::format("'{}' is not a number", *s));
    } else {
      return fail("expected a number");
    }
    if (!std::isfinite(out)) return fail("expected a finite number");
    return true;
  }

  bool as_probability(double& out) {
    if (!as_number(out)) return false;
    if (out < 0 || out > 1) return fail(fmt::format("{} is outside [0, 1]", out));
    return true;
  }

  // A count or size: an integer, or a string with a size unit.
  bool as_bytes(uint64_t& out) {
    if (auto* i = std::get_if<int64_t>(&value_.value)) {
      if (*i < 0) return fail(fmt::format("{} is negative", *i));
      out = static_cast<uint64_t>(*i);
      return true;
    }
    if (auto* s = std::get_if<std::string>(&value_.value)) {
      std::string problem;
      auto parsed = parse_bytes(*s, problem);
      if (!parsed) return fail(problem);
      out = *parsed;
      return true;
    }
    return fail("expected a whole number or a size like \"64KB\"");
  }

  bool as_rate(uint64_t& out) {
    if (auto* i = std::get_if<int64_t>(&value_.value)) {
      if (*i < 1) return fail(fmt::format("{} bytes/s is not a positive rate", *i));
      if (*i > 1'000'000'000'000) return fail("absurdly fast (over 1 TB/s)");
      out = static_cast<uint64_t>(*i);
      return true;
    }
    if (auto* s = std::get_if<std::string>(&value_.value)) {
      std::string problem;
      auto parsed = parse_rate(*s, problem);
      if (!parsed) return fail(problem);
      out = *parsed;
      return true;
    }
    return fail("expected a rate like \"2MB/s\" or bytes per second");
  }

 private:
  const std::string& key_;
  const ParamValue& value_;
  std::string& error_;
};

bool apply_param(FaultSpec& spec, const std::string& key, const ParamValue& value, std::string& error) {
  Reader r(key, value, error);
  FaultParams& p = spec.params;
  Schedule& s = spec.schedule;
  if (key == "after") return r.as_duration(s.start_after);
  if (key == "after_bytes") return r.as_bytes(s.after_bytes);
  if (key == "after_messages") return r.as_bytes(s.after_messages);
  if (key == "for") return r.as_duration(s.duration);
  if (key == "flap_on" || (key == "on" && spec.kind == FaultKind::Flap)) return r.as_duration(s.flap_on);
  if (key == "flap_off" || (key == "off" && spec.kind == FaultKind::Flap)) return r.as_duration(s.flap_off);
  if (key == "delay") return r.as_duration(p.delay);
  if (key == "jitter") return r.as_duration(p.jitter);
  if (key == "gap") return r.as_duration(p.gap);
  if (key == "distribution") {
    std::string text;
    if (!r.as_text(text)) return false;
    if (text == "uniform") p.distribution = JitterDistribution::Uniform;
    else if (text == "normal") p.distribution = JitterDistribution::Normal;
    else return r.fail(fmt::format("'{}' is not a distribution (uniform, normal)", text));
    return true;
  }
  if (key == "rate") return r.as_rate(p.rate);
  if (key == "burst") return r.as_bytes(p.burst);
  if (key == "probability") return r.as_probability(p.probability);
  if (key == "p") return r.as_probability(p.gilbert_elliott.p);
  if (key == "r") return r.as_probability(p.gilbert_elliott.r);
  if (key == "bad_loss") return r.as_probability(p.gilbert_elliott.bad_loss);
  if (key == "good_loss") return r.as_probability(p.gilbert_elliott.good_loss);
  if (key == "size") return r.as_bytes(p.size);
  return r.fail("internal: unhandled key");
}

bool has_key(const ParamList& params, std::string_view key) {
  return std::any_of(params.begin(), params.end(), [&](const auto& kv) { return kv.first == key; });
}

}  // namespace

std::optional<FaultKind> parse_fault_kind(std::string_view name) {
  for (const auto& info : kind_table()) {
    if (info.name == name) return info.kind;
  }
  // Accept the hyphenated spelling too: "burst-loss".
  if (name == "burst-loss") return FaultKind::BurstLoss;
  return std::nullopt;
}

std::optional<Direction> parse_direction(std::string_view name) {
  if (name == "up") return Direction::Up;
  if (name == "down") return Direction::Down;
  if (name == "both") return Direction::Both;
  return std::nullopt;
}

std::string_view to_string(FaultKind kind) {
  for (const auto& info : kind_table()) {
    if (info.kind == kind) return info.name;
  }
  return "?";
}

std::string_view to_string(Direction direction) {
  switch (direction) {
    case Direction::Up: return "up";
    case Direction::Down: return "down";
    case Direction::Both: return "both";
  }
  return "?";
}

bool covers(Direction fault_direction, Direction one_direction) {
  return fault_direction == Direction::Both || fault_direction == one_direction;
}

std::string fault_kind_names() {
  std::string names;
  for (const auto& info : kind_table()) {
    if (!names.empty()) names += ", ";
    names += info.name;
  }
  return names;
}

std::optional<FaultSpec> make_fault(std::string_view kind_name, Direction direction, const ParamList& params,
                                    std::string& error) {
  auto kind = parse_fault_kind(kind_name);
  if (!kind) {
    error = fmt::format("unknown fault '{}' (known: {})", kind_name, fault_kind_names());
    return std::nullopt;
  }
  const KindInfo* info = nullptr;
  for (const auto& candidate : kind_table()) {
    if (candidate.kind == *kind) info = &candidate;
  }
  FaultSpec spec;
  spec.kind = *kind;
  spec.direction = direction;
  if (spec.kind == FaultKind::Reorder) spec.params.gap = std::chrono::milliseconds(10);

  for (const auto& [key, value] : params) {
    const bool known = std::find(info->keys.begin(), info->keys.end(), key) != info->keys.end() ||
                       std::find(kScheduleKeys.begin(), kScheduleKeys.end(), key) != kScheduleKeys.end();
    if (!known) {
      std::string accepted;
      for (auto k : info->keys) accepted += fmt::format("{}{}", accepted.empty() ? "" : ", ", k);
      for (auto k : kScheduleKeys) accepted += fmt::format("{}{}", accepted.empty() ? "" : ", ", k);
      error = fmt::format("{}, key '{}': not a parameter of fault '{}' (accepted: {})", value.origin, key,
                          info->name, accepted);
      return std::nullopt;
    }
    if (!apply_param(spec, key, value, error)) return std::nullopt;
  }

  // Required parameters and cross-field checks.
  auto missing = [&](std::string_view key) {
    error = fmt::format("fault '{}' needs the parameter '{}'", info->name, key);
    return std::nullopt;
  };
  switch (spec.kind) {
    case FaultKind::Delay:
      if (!has_key(params, "delay")) return missing("delay");
      break;
    case FaultKind::Bandwidth:
      if (!has_key(params, "rate")) return missing("rate");
      break;
    case FaultKind::Loss:
    case FaultKind::Duplicate:
    case FaultKind::Corrupt:
    case FaultKind::Reorder:
      if (!has_key(params, "probability")) return missing("probability");
      break;
    case FaultKind::BurstLoss:
      if (!has_key(params, "p")) return missing("p");
      if (!has_key(params, "r")) return missing("r");
      if (spec.params.gilbert_elliott.r <= 0) {
        error = "fault 'burst_loss': r must be above 0, or the bad state never ends";
        return std::nullopt;
      }
      break;
    case FaultKind::Flap:
      if (!has_key(params, "on")) return missing("on");
      if (!has_key(params, "off")) return missing("off");
      if (!spec.schedule.flapping()) {
        error = "fault 'flap': 'on' and 'off' must both be above zero";
        return std::nullopt;
      }
      break;
    case FaultKind::Slice:
      if (!has_key(params, "size")) return missing("size");
      if (spec.params.size < 1 || spec.params.size > 1 << 20) {
        error = fmt::format("fault 'slice': size {} is outside [1, 1048576] bytes", spec.params.size);
        return std::nullopt;
      }
      break;
    default:
      break;
  }
  if ((spec.schedule.flap_on.count() > 0) != (spec.schedule.flap_off.count() > 0)) {
    error = fmt::format("fault '{}': flap_on and flap_off must be given together", info->name);
    return std::nullopt;
  }
  return spec;
}

nlohmann::json to_json(const FaultSpec& spec) {
  nlohmann::json j;
  j["fault"] = std::string(to_string(spec.kind));
  j["direction"] = std::string(to_string(spec.direction));
  const FaultParams& p = spec.params;
  switch (spec.kind) {
    case FaultKind::Delay:
      j["delay"] = format_duration(p.delay);
      j["jitter"] = format_duration(p.jitter);
      j["distribution"] = p.distribution == JitterDistribution::Uniform ? "uniform" : "normal";
      break;
    case FaultKind::Bandwidth:
      j["rate"] = p.rate;
      if (p.burst) j["burst"] = p.burst;
      break;
    case FaultKind::Loss:
    case FaultKind::Duplicate:
    case FaultKind::Corrupt:
      j["probability"] = p.probability;
      break;
    case FaultKind::Reorder:
      j["probability"] = p.probability;
      j["gap"] = format_duration(p.gap);
      break;
    case FaultKind::BurstLoss:
      j["p"] = p.gilbert_elliott.p;
      j["r"] = p.gilbert_elliott.r;
      j["bad_loss"] = p.gilbert_elliott.bad_loss;
      j["good_loss"] = p.gilbert_elliott.good_loss;
      break;
    case FaultKind::Slice:
      j["size"] = p.size;
      j["gap"] = format_duration(p.gap);
      break;
    default:
      break;
  }
  const Schedule& s = spec.schedule;
  if (s.start_after.count()) j["after"] = format_duration(s.start_after);
  if (s.after_bytes) j["after_bytes"] = s.after_bytes;
  if (s.after_messages) j["after_messages"] = s.after_messages;
  if (s.duration.count()) j["for"] = format_duration(s.duration);
  if (s.flapping()) {
    j["flap_on"] = format_duration(s.flap_on);
    j["flap_off"] = format_duration(s.flap_off);
  }
  return j;
}

}  // namespace netsim
