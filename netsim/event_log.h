// A timestamped log of fault events (set, active, idle, cleared, partition, heal, reset), one
// JSON object per line, meant to be laid beside the pair's failover logs. Each line carries
// both wall time (to line up with other hosts' logs) and monotonic seconds since the
// simulator started (to measure). Thread-safe; the most recent events are also kept in
// memory for tests and `ctl events`.
#pragma once

#include <chrono>
#include <cstdio>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "netsim/units.h"

namespace netsim {

class EventLog {
 public:
  EventLog();
  ~EventLog();
  EventLog(const EventLog&) = delete;
  EventLog& operator=(const EventLog&) = delete;

  // Also append every event to this file (JSON lines). Throws std::runtime_error on failure.
  void open_file(const std::string& path);

  // Adds "t" (seconds since start), "wall" (UTC, microseconds) and "event" to `fields`.
  void emit(const std::string& event, nlohmann::json fields);

  std::vector<nlohmann::json> recent() const;
  Clock::time_point start() const { return start_; }

 private:
  static constexpr size_t kKeep = 10000;
  const Clock::time_point start_;
  mutable std::mutex mutex_;
  std::deque<std::string> recent_;  // serialized lines
  std::FILE* file_ = nullptr;
};

}  // namespace netsim
