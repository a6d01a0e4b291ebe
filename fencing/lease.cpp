#include "fencing/lease.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <climits>

namespace tandem::fencing {

using std::chrono::milliseconds;

LeaseKeeper::LeaseKeeper(const ArbiterConfig& config, std::string node_name)
    : LeaseKeeper(make_arbiter(config), config, std::move(node_name)) {}

LeaseKeeper::LeaseKeeper(std::unique_ptr<Arbiter> arbiter, const ArbiterConfig& config, std::string node_name)
    : arbiter_(std::move(arbiter)), config_(config), node_(std::move(node_name)), description_(arbiter_->describe()) {}

LeaseKeeper::~LeaseKeeper() { stop(); }

LeaseKeeper::Clock::time_point LeaseKeeper::output_deadline(Clock::time_point sent, milliseconds ttl,
                                                            milliseconds timeout) {
  // ttl * 0.95 in microseconds, so short test leases keep their precision.
  const auto usable = std::chrono::microseconds(ttl.count() * 950) - 2 * std::chrono::microseconds(timeout);
  return sent + usable;
}

std::chrono::milliseconds LeaseKeeper::renew_interval() const {
  // Every lease/3; sooner when the self-fencing window is short, so that a renewal that
  // takes the whole timeout still lands before the previous deadline.
  const milliseconds window = config_.lease * 95 / 100 - 2 * config_.timeout;
  milliseconds interval = config_.lease / 3;
  if (window - config_.timeout > milliseconds(0)) interval = std::min(interval, window - config_.timeout);
  return std::max(interval, milliseconds(10));
}

void LeaseKeeper::start() {
  std::lock_guard lock(mutex_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { run(); });
}

void LeaseKeeper::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void LeaseKeeper::acquire(uint64_t known_epoch, std::function<void(const Grant&)> on_granted,
                          std::function<void(const Grant&)> on_refused) {
  {
    std::lock_guard lock(mutex_);
    ++generation_;
    mode_ = Mode::Acquiring;
    known_epoch_ = std::max(known_epoch_, known_epoch);
    on_granted_ = std::move(on_granted);
    on_refused_ = std::move(on_refused);
    on_advanced_ = nullptr;
    lapses_ = true;
    deadline_ = {};
  }
  cv_.notify_all();
}

void LeaseKeeper::advance(std::function<void(const Grant&)> on_advanced) {
  {
    std::lock_guard lock(mutex_);
    if (mode_ != Mode::Holding) return;
    ++generation_;  // a renewal in flight is superseded: its answer is dropped
    on_advanced_ = std::move(on_advanced);
  }
  cv_.notify_all();
}

void LeaseKeeper::cancel() {
  {
    std::lock_guard lock(mutex_);
    ++generation_;
    if (mode_ != Mode::Fenced) mode_ = Mode::Idle;
    on_granted_ = nullptr;
    on_refused_ = nullptr;
    on_advanced_ = nullptr;
    deadline_ = {};
  }
  cv_.notify_all();
}

void LeaseKeeper::release() {
  uint64_t epoch;
  {
    std::lock_guard lock(mutex_);
    const bool held = mode_ == Mode::Holding;
    ++generation_;
    mode_ = Mode::Idle;
    on_advanced_ = nullptr;
    deadline_ = {};
    epoch = epoch_;
    if (!held) return;
    last_ = "released epoch " + std::to_string(epoch);
  }
  cv_.notify_all();
  // On the caller's thread, after any renewal in flight (one arbiter call at a time); the
  // keeper's thread makes no new call while the mode is Idle.
  std::lock_guard turn(call_mutex_);
  arbiter_->release(node_, epoch);
  spdlog::info("lease: released epoch {} at {}", epoch, description_);
}

void LeaseKeeper::yield(const std::string& why) {
  std::function<void(const std::string&)> callback;
  {
    std::lock_guard lock(mutex_);
    ++generation_;
    if (mode_ == Mode::Fenced) return;
    mode_ = Mode::Fenced;
    deadline_ = {};
    on_advanced_ = nullptr;
    last_ = "yielded: " + why;
    callback = on_fenced;
  }
  cv_.notify_all();
  spdlog::warn("lease: yielding epoch {} ({}): no output from this node any more", epoch(), why);
  if (callback) callback(why);
}

bool LeaseKeeper::may_release_output(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  if (mode_ != Mode::Holding) return false;
  return !lapses_ || now < deadline_;
}

bool LeaseKeeper::fenced() const {
  std::lock_guard lock(mutex_);
  return mode_ == Mode::Fenced;
}

bool LeaseKeeper::holding() const {
  std::lock_guard lock(mutex_);
  return mode_ == Mode::Holding;
}

bool LeaseKeeper::acquiring() const {
  std::lock_guard lock(mutex_);
  return mode_ == Mode::Acquiring;
}

int64_t LeaseKeeper::lease_ms_left(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  if (mode_ != Mode::Holding) return -1;
  if (!lapses_) return INT32_MAX;
  return std::max<int64_t>(0, std::chrono::duration_cast<milliseconds>(deadline_ - now).count());
}

uint64_t LeaseKeeper::epoch() const {
  std::lock_guard lock(mutex_);
  return epoch_;
}

std::string LeaseKeeper::describe() const { return description_; }

std::string LeaseKeeper::last_outcome() const {
  std::lock_guard lock(mutex_);
  return last_;
}

void LeaseKeeper::note(const Grant& g, const char* what) {
  std::string text = std::string(what) + " " + to_string(g.outcome);
  if (g.granted()) text += " epoch " + std::to_string(g.epoch) + " (ttl " + std::to_string(g.ttl.count()) + " ms)";
  else if (!g.holder.empty()) text += " (holder " + g.holder + ", epoch " + std::to_string(g.epoch) + ")";
  if (!g.why.empty()) text += ": " + g.why;
  last_ = std::move(text);
}

void LeaseKeeper::run() {
  std::unique_lock lock(mutex_);
  std::string logged;  // the last outcome logged, so a retry loop logs changes only
  while (!stopping_) {
    if (mode_ != Mode::Acquiring && mode_ != Mode::Holding) {
      cv_.wait(lock);
      continue;
    }
    const Mode mode = mode_;
    const bool advancing = mode == Mode::Holding && on_advanced_;
    const uint64_t generation = generation_;
    const uint64_t known = known_epoch_, epoch = epoch_;
    lock.unlock();
    const Clock::time_point sent = Clock::now();
    Grant g;
    {
      std::lock_guard turn(call_mutex_);
      try {
        g = mode == Mode::Acquiring ? arbiter_->acquire(node_, known)
            : advancing             ? arbiter_->advance(node_, epoch)
                                    : arbiter_->renew(node_, epoch);
      } catch (const std::exception& e) {
        g.outcome = Grant::Outcome::Unreachable;
        g.why = e.what();
      }
    }
    lock.lock();
    if (stopping_) break;
    if (generation != generation_) continue;  // acquire/cancel/release/yield meanwhile: decided
    note(g, mode == Mode::Acquiring ? "acquire:" : advancing ? "advance:" : "renew:");
    if (g.granted() && g.epoch > known_epoch_) known_epoch_ = g.epoch;
    if (last_ != logged && (mode == Mode::Acquiring || advancing || !g.granted())) {
      logged = last_;
      if (g.granted()) spdlog::info("lease: {}", last_);
      else spdlog::warn("lease: {}", last_);
    }
    std::function<void(const Grant&)> granted_callback;
    std::function<void(const std::string&)> fenced_callback;
    std::string fenced_why;
    if (g.granted()) {
      epoch_ = g.epoch;
      lapses_ = g.ttl.count() > 0;
      // Never move the deadline back (an older request answered late).
      const auto d = output_deadline(sent, g.ttl, config_.timeout);
      if (mode == Mode::Acquiring || d > deadline_) deadline_ = d;
      if (mode == Mode::Acquiring) {
        mode_ = Mode::Holding;
        on_refused_ = nullptr;
        granted_callback = std::exchange(on_granted_, nullptr);
      } else if (advancing) {
        granted_callback = std::exchange(on_advanced_, nullptr);
      }
    } else if (mode == Mode::Acquiring && g.outcome == Grant::Outcome::Refused && on_refused_) {
      mode_ = Mode::Idle;
      on_granted_ = nullptr;
      granted_callback = std::exchange(on_refused_, nullptr);  // runs with the refusal
    } else if (advancing && g.outcome == Grant::Outcome::Unreachable && lapses_ && Clock::now() >= deadline_) {
      // The epoch could not be moved before this lease ran out: the secondary, if alive, may
      // be granted the lease now, so this node stops for good (safety first).
      mode_ = Mode::Fenced;
      deadline_ = {};
      on_advanced_ = nullptr;
      fenced_why = "could not advance the epoch before the lease ran out (" + last_ + ")";
      last_ = fenced_why;
      fenced_callback = on_fenced;
    } else if (mode == Mode::Holding &&
               (g.outcome == Grant::Outcome::Refused || g.outcome == Grant::Outcome::Held)) {
      mode_ = Mode::Fenced;
      deadline_ = {};
      on_advanced_ = nullptr;
      fenced_why = last_;
      fenced_callback = on_fenced;
    }
    if (granted_callback || fenced_callback) {
      lock.unlock();
      if (granted_callback) granted_callback(g);
      if (fenced_callback) {
        spdlog::critical("lease: FENCED ({}): this node releases no more output", fenced_why);
        fenced_callback(fenced_why);
      }
      lock.lock();
      continue;
    }
    // An advance the arbiter did not answer is retried soon: output waits for it.
    const milliseconds pause = mode_ == Mode::Acquiring ? std::max(config_.lease / 4, milliseconds(10))
                               : on_advanced_           ? std::max(renew_interval() / 4, milliseconds(10))
                                                        : renew_interval();
    cv_.wait_for(lock, pause, [&] { return stopping_ || generation != generation_; });
  }
}

}  // namespace tandem::fencing
