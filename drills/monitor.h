// StatusMonitor: polls both nodes' control sockets throughout a drill iteration and keeps,
// for every (node, epoch) seen as a live primary (role primary, serving, not fenced), the
// span in which it was certainly live.
//
// One poll proves only that the node was live at some instant between sending the request
// and reading the reply. A primary is live in one epoch at most once (a fenced or demoted
// node never serves that epoch again), so two polls that both saw it live prove it was
// live for the whole time from the first reply to the second request. Two nodes whose
// certain spans overlap were both releasing output at once: a dual-primary epoch. Two
// nodes ever live in the *same* epoch break the one-primary-per-epoch rule outright.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace tandem::drills {

using Clock = std::chrono::steady_clock;

struct LiveSpan {
  int slot = 0;
  uint64_t epoch = 0;
  Clock::time_point first_reply;   // reply time of the first poll that saw it live
  Clock::time_point last_request;  // request time of the last poll that saw it live
  Clock::time_point last_reply;
  uint32_t polls = 0;
};

struct DualPrimary {
  uint64_t epoch = 0;  // the older of the two epochs (the one that should have stopped)
  std::string why;
};

class StatusMonitor {
 public:
  StatusMonitor(std::vector<std::string> sockets, std::chrono::milliseconds period);
  ~StatusMonitor();
  StatusMonitor(const StatusMonitor&) = delete;
  StatusMonitor& operator=(const StatusMonitor&) = delete;
  void stop();

  std::vector<LiveSpan> spans() const;
  // When `slot` was first seen live in an epoch above `above`.
  std::optional<Clock::time_point> first_live(int slot, uint64_t above) const;
  std::optional<nlohmann::json> latest(int slot) const;
  uint64_t polls() const;

 private:
  void poll_loop(int slot);

  std::vector<std::string> sockets_;
  std::chrono::milliseconds period_;
  mutable std::mutex mutex_;
  std::map<std::pair<int, uint64_t>, LiveSpan> spans_;
  std::vector<std::optional<nlohmann::json>> latest_;
  uint64_t polls_ = 0;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

// Dual primaries proven by the spans (see above). Pure, for tests.
std::vector<DualPrimary> find_dual_primaries(const std::vector<LiveSpan>& spans);

}  // namespace tandem::drills
