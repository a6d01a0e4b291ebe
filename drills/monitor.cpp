#include "drills/monitor.h"

#include <fmt/format.h>

#include "drills/pair_env.h"

namespace tandem::drills {

StatusMonitor::StatusMonitor(std::vector<std::string> sockets, std::chrono::milliseconds period)
    : sockets_(std::move(sockets)), period_(period), latest_(sockets_.size()) {
  for (int i = 0; i < static_cast<int>(sockets_.size()); ++i) threads_.emplace_back([this, i] { poll_loop(i); });
}

StatusMonitor::~StatusMonitor() { stop(); }

void StatusMonitor::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

void StatusMonitor::poll_loop(int slot) {
  while (true) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    const auto sent = Clock::now();
    // A frozen node does not answer: keep the timeout short so the other polls go on.
    const auto status = node_status(sockets_[slot], 300);
    const auto received = Clock::now();
    {
      std::lock_guard lock(mutex_);
      ++polls_;
      latest_[slot] = status;
      if (status && is_live_primary(*status)) {
        const uint64_t epoch = status->value("epoch", uint64_t{0});
        auto [it, fresh] = spans_.try_emplace({slot, epoch});
        LiveSpan& span = it->second;
        if (fresh) {
          span.slot = slot;
          span.epoch = epoch;
          span.first_reply = received;
        }
        span.last_request = sent;
        span.last_reply = received;
        ++span.polls;
      }
    }
    const auto next = sent + period_;
    while (Clock::now() < next) {
      {
        std::lock_guard lock(mutex_);
        if (stopping_) return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
}

std::vector<LiveSpan> StatusMonitor::spans() const {
  std::lock_guard lock(mutex_);
  std::vector<LiveSpan> out;
  for (const auto& [key, span] : spans_) out.push_back(span);
  return out;
}

std::optional<Clock::time_point> StatusMonitor::first_live(int slot, uint64_t above) const {
  std::lock_guard lock(mutex_);
  std::optional<Clock::time_point> first;
  for (const auto& [key, span] : spans_)
    if (key.first == slot && key.second > above && (!first || span.first_reply < *first)) first = span.first_reply;
  return first;
}

std::optional<nlohmann::json> StatusMonitor::latest(int slot) const {
  std::lock_guard lock(mutex_);
  return latest_.at(slot);
}

uint64_t StatusMonitor::polls() const {
  std::lock_guard lock(mutex_);
  return polls_;
}

std::vector<DualPrimary> find_dual_primaries(const std::vector<LiveSpan>& spans) {
  std::vector<DualPrimary> found;
  for (size_t i = 0; i < spans.size(); ++i) {
    for (size_t j = i + 1; j < spans.size(); ++j) {
      const LiveSpan& x = spans[i];
      const LiveSpan& y = spans[j];
      if (x.slot == y.slot) continue;
      if (x.epoch == y.epoch) {
        found.push_back({x.epoch, fmt::format("nodes {} and {} both live as primary in epoch {}", x.slot, y.slot, x.epoch)});
        continue;
      }
      // Certain spans: [first_reply, last_request], empty unless seen live at least twice.
      const bool x_span = x.polls >= 2 && x.first_reply <= x.last_request;
      const bool y_span = y.polls >= 2 && y.first_reply <= y.last_request;
      if (x_span && y_span && x.first_reply <= y.last_request && y.first_reply <= x.last_request) {
        const LiveSpan& older = x.epoch < y.epoch ? x : y;
        const LiveSpan& newer = x.epoch < y.epoch ? y : x;
        found.push_back({older.epoch, fmt::format("node {} still live in epoch {} while node {} was live in epoch {}",
                                                  older.slot, older.epoch, newer.slot, newer.epoch)});
      }
    }
  }
  return found;
}

}  // namespace tandem::drills
