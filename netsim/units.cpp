#include "netsim/units.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <fmt/format.h>

namespace netsim {
namespace {

// Splits "1.5ms" into 1.5 and "ms". Refuses signs, empty numbers and trailing junk in the
// number part; the unit is returned lower-cased for matching.
bool split_number(std::string_view text, double& number, std::string& unit, std::string& error) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  if (text.empty()) {
    error = "empty value";
    return false;
  }
  if (text.front() == '-') {
    error = fmt::format("'{}' is negative", text);
    return false;
  }
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0) {
    error = fmt::format("'{}' does not start with a number", text);
    return false;
  }
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, number);
  if (ec != std::errc() || ptr != text.data() + i || !std::isfinite(number)) {
    error = fmt::format("'{}' is not a number", text.substr(0, i));
    return false;
  }
  std::string_view rest = text.substr(i);
  while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front()))) rest.remove_prefix(1);
  unit.clear();
  for (char c : rest) unit.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  return true;
}

}  // namespace

std::optional<Duration> parse_duration(std::string_view text, std::string& error) {
  double number = 0;
  std::string unit;
  if (!split_number(text, number, unit, error)) return std::nullopt;
  double ns_per_unit = 0;
  if (unit == "ns") ns_per_unit = 1;
  else if (unit == "us" || unit == "µs") ns_per_unit = 1e3;
  else if (unit == "ms") ns_per_unit = 1e6;
  else if (unit == "s") ns_per_unit = 1e9;
  else if (unit == "m" || unit == "min") ns_per_unit = 60e9;
  else if (unit == "h") ns_per_unit = 3600e9;
  else {
    error = fmt::format("'{}' needs a unit: ns, us, ms, s, min or h", text);
    return std::nullopt;
  }
  const double ns = number * ns_per_unit;
  if (ns > static_cast<double>(kMaxDuration.count())) {
    error = fmt::format("'{}' is longer than the 24h limit", text);
    return std::nullopt;
  }
  return Duration(static_cast<int64_t>(std::llround(ns)));
}

std::optional<uint64_t> parse_bytes(std::string_view text, std::string& error) {
  double number = 0;
  std::string unit;
  if (!split_number(text, number, unit, error)) return std::nullopt;
  double multiplier = 0;
  if (unit.empty() || unit == "b") multiplier = 1;
  else if (unit == "kb" || unit == "k") multiplier = 1e3;
  else if (unit == "kib") multiplier = 1024;
  else if (unit == "mb" || unit == "m") multiplier = 1e6;
  else if (unit == "mib") multiplier = 1024.0 * 1024;
  else if (unit == "gb" || unit == "g") multiplier = 1e9;
  else if (unit == "gib") multiplier = 1024.0 * 1024 * 1024;
  else {
    error = fmt::format("'{}': unknown size unit (B, KB, KiB, MB, MiB, GB, GiB)", text);
    return std::nullopt;
  }
  const double bytes = number * multiplier;
  if (bytes > 1e15) {
    error = fmt::format("'{}' is absurdly large", text);
    return std::nullopt;
  }
  return static_cast<uint64_t>(std::llround(bytes));
}

std::optional<uint64_t> parse_rate(std::string_view text, std::string& error) {
  double number = 0;
  std::string unit;
  if (!split_number(text, number, unit, error)) return std::nullopt;
  // Accept both "/s" and "ps" spellings: "1MB/s", "8mbps".
  if (unit.size() > 2 && unit.ends_with("/s")) unit.resize(unit.size() - 2);
  else if (unit.size() > 2 && unit.ends_with("ps")) unit.resize(unit.size() - 2);
  double bytes_per_unit = 0;
  if (unit.empty() || unit == "b") bytes_per_unit = 1;
  else if (unit == "kb") bytes_per_unit = 1e3;
  else if (unit == "kib") bytes_per_unit = 1024;
  else if (unit == "mb") bytes_per_unit = 1e6;
  else if (unit == "mib") bytes_per_unit = 1024.0 * 1024;
  else if (unit == "gb") bytes_per_unit = 1e9;
  else if (unit == "bit") bytes_per_unit = 1.0 / 8;
  else if (unit == "kbit") bytes_per_unit = 1e3 / 8;
  else if (unit == "mbit") bytes_per_unit = 1e6 / 8;
  else if (unit == "gbit") bytes_per_unit = 1e9 / 8;
  else {
    error = fmt::format("'{}': unknown rate unit (B/s, KB/s, MB/s, GB/s, kbit/s, Mbit/s, Gbit/s)", text);
    return std::nullopt;
  }
  const double rate = number * bytes_per_unit;
  if (rate < 1) {
    error = fmt::format("'{}' is below 1 byte per second", text);
    return std::nullopt;
  }
  if (rate > 1e12) {
    error = fmt::format("'{}' is absurdly fast (over 1 TB/s)", text);
    return std::nullopt;
  }
  return static_cast<uint64_t>(std::llround(rate));
}

std::string format_duration(Duration d) {
  const auto ns = d.count();
  if (ns % 1'000'000'000 == 0) return fmt::format("{}s", ns / 1'000'000'000);
  if (ns % 1'000'000 == 0) return fmt::format("{}ms", ns / 1'000'000);
  if (ns % 1'000 == 0) return fmt::format("{}us", ns / 1'000);
  return fmt::format("{}ns", ns);
}

}  // namespace netsim
