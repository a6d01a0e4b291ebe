// What a fault is: its kind, the direction it acts on, its parameters and its schedule.
// One parser (make_fault) serves scenario files, the control socket and the C++ API, so a
// value is validated the same way wherever it comes from.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "netsim/units.h"

namespace netsim {

// up = client -> target (the direction the connection was opened in), down = target -> client.
enum class Direction { Up, Down, Both };

enum class FaultKind {
  Delay,      // fixed delay + jitter (TCP keeps order; UDP may reorder)
  Bandwidth,  // token-bucket rate cap
  Loss,       // UDP: independent (Bernoulli) datagram loss
  BurstLoss,  // UDP: Gilbert-Elliott two-state bursty loss
  Stall,      // TCP: hold the stream (bytes wait, sender sees back-pressure)
  Duplicate,  // UDP: send some datagrams twice
  Reorder,    // UDP: hold some datagrams back so later ones overtake them
  Corrupt,    // flip bits: per byte on TCP, per datagram on UDP
  Blackhole,  // accept and read, forward nothing
  Reset,      // link-wide: RST every connection (SO_LINGER 0), new ones too while active
  Refuse,     // link-wide: stop listening, new connections get ECONNREFUSED
  Partition,  // drop (UDP) / hold (TCP) everything in the direction
  Flap,       // a partition that turns on and off with the given periods
  Slice,      // TCP: forward the stream in tiny segments
};

enum class JitterDistribution { Uniform, Normal };

struct GilbertElliott {
  double p = 0;          // P(good -> bad) per datagram
  double r = 1;          // P(bad -> good) per datagram
  double bad_loss = 1;   // loss probability in the bad state (1 - h)
  double good_loss = 0;  // loss probability in the good state (1 - k)
};

struct FaultParams {
  Duration delay{0};
  Duration jitter{0};
  JitterDistribution distribution = JitterDistribution::Uniform;
  uint64_t rate = 0;   // bytes per second
  uint64_t burst = 0;  // token bucket depth in bytes; 0 = derived from the rate
  double probability = 0;
  GilbertElliott gilbert_elliott;
  Duration gap{0};     // reorder: how long a held datagram waits; slice: pause between segments
  uint64_t size = 0;   // slice: segment size in bytes
};

// When a fault acts. With nothing set it acts from the moment it is set until cleared.
struct Schedule {
  Duration start_after{0};      // "after": wait this long, then act
  uint64_t after_bytes = 0;     // act once this many bytes entered the link in the fault's direction(s)
  uint64_t after_messages = 0;  // ... or this many datagrams in its direction(s) (UDP) / connections (TCP)
  Duration duration{0};         // "for": remove the fault this long after it started acting; 0 = never
  Duration flap_on{0};          // flapping: acting for flap_on, then idle for flap_off, repeat
  Duration flap_off{0};
  bool flapping() const { return flap_on.count() > 0 && flap_off.count() > 0; }
};

struct FaultSpec {
  FaultKind kind = FaultKind::Delay;
  Direction direction = Direction::Both;
  FaultParams params;
  Schedule schedule;
};

// A parameter as written by the user, with where it was written ("line 12" or "argument").
struct ParamValue {
  std::variant<std::string, int64_t, double, bool> value;
  std::string origin;
};
using ParamList = std::vector<std::pair<std::string, ParamValue>>;

std::optional<FaultKind> parse_fault_kind(std::string_view name);
std::optional<Direction> parse_direction(std::string_view name);
std::string_view to_string(FaultKind kind);
std::string_view to_string(Direction direction);
bool covers(Direction fault_direction, Direction one_direction);

// All fault names, for --help and error messages.
std::string fault_kind_names();

// Builds a validated fault. On error returns nullopt and sets `error` to a message naming the
// origin and key, e.g. "line 7, key 'probability': 1.5 is outside [0, 1]".
std::optional<FaultSpec> make_fault(std::string_view kind, Direction direction, const ParamList& params,
                                    std::string& error);

nlohmann::json to_json(const FaultSpec& spec);

}  // namespace netsim
