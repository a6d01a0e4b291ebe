// Parsing of the human units used in scenario files and on the command line:
// durations ("500ms", "2s", "1.5s", "250us"), byte sizes ("64KB", "1MiB") and rates
// ("1MB/s", "8Mbit/s"). Every parser refuses negative, malformed or absurd values with a
// message that says what was wrong; callers add the line/key context.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace netsim {

using Clock = std::chrono::steady_clock;
using Duration = std::chrono::nanoseconds;

// Largest delay/duration we accept: beyond this a value is a typo, not a test.
inline constexpr Duration kMaxDuration = std::chrono::hours(24);

// Each returns the value, or sets `error` and returns nullopt.
std::optional<Duration> parse_duration(std::string_view text, std::string& error);
std::optional<uint64_t> parse_bytes(std::string_view text, std::string& error);
// Bytes per second.
std::optional<uint64_t> parse_rate(std::string_view text, std::string& error);

std::string format_duration(Duration d);

}  // namespace netsim
