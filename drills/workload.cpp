#include "drills/workload.h"

#include <fmt/format.h>

namespace tandem::drills {

namespace {
constexpr size_t kMaxAbandoned = 16;
}  // namespace

KvWorkload::KvWorkload(std::array<Endpoint, 2> consoles, int preferred_slot, WorkloadOptions options)
    : consoles_(std::move(consoles)), options_(std::move(options)), rng_(options_.seed), preferred_slot_(preferred_slot) {}

KvWorkload::~KvWorkload() { stop(); }

void KvWorkload::start() { thread_ = std::thread([this] { run(); }); }

void KvWorkload::stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

void KvWorkload::record(int slot, const std::string& line, bool abandoned) {
  std::lock_guard lock(mutex_);
  replies_.push_back({Clock::now(), slot, abandoned, line});
}

void KvWorkload::abandon() {
  if (conn_.is_open()) {
    if (abandoned_.size() >= kMaxAbandoned) abandoned_.erase(abandoned_.begin());
    abandoned_.emplace_back(slot_, std::move(conn_));
  }
  conn_ = KvConnection();
  // Next time, try the other node first: this one just failed us.
  preferred_slot_ = 1 - slot_;
  slot_ = -1;
}

void KvWorkload::poll_abandoned() {
  for (auto& [slot, conn] : abandoned_) {
    while (conn.is_open()) {
      auto line = conn.read_line(std::chrono::milliseconds(0));
      if (!line) break;
      record(slot, *line, /*abandoned=*/true);
    }
  }
}

void KvWorkload::drain_abandoned(std::chrono::milliseconds duration) {
  const auto end = Clock::now() + duration;
  while (Clock::now() < end) {
    poll_abandoned();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool KvWorkload::try_slot(int slot) {
  KvConnection conn;
  if (!conn.connect(consoles_[slot], options_.connect_timeout)) return false;
  // The guest has one console: output held back for commands sent on earlier connections
  // (or repeated after a failover) can arrive on this one. A probe with a reply nobody else
  // can produce (a fresh token stored and read back) marks where our own replies start.
  const uint64_t n = probes_++;
  const std::string key = fmt::format("{}probe{}", options_.key_prefix, n);
  const std::string token = fmt::format("probe-{}-{}", options_.seed, n);
  if (!conn.send_line(fmt::format("SET {} {}", key, token)) || !conn.send_line("GET " + key) ||
      !conn.send_line("DEL " + key))
    return false;
  const auto deadline = Clock::now() + options_.reply_timeout;
  bool synced = false;
  while (Clock::now() < deadline) {
    auto line = conn.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
    if (!line) break;
    if (*line == token) {
      record(slot, *line, false);
      synced = true;
      break;
    }
    std::lock_guard lock(mutex_);
    ++repeated_;  // not a reply to anything sent on this connection
  }
  if (synced) {
    auto del = conn.read_line(options_.reply_timeout);  // the probe key's DEL
    if (del && *del == "OK") {
      conn_ = std::move(conn);
      slot_ = slot;
      return true;
    }
  }
  // Accepted but silent (a frozen node's backlog, a fenced node): keep watching it for
  // late output.
  if (conn.is_open()) {
    if (abandoned_.size() >= kMaxAbandoned) abandoned_.erase(abandoned_.begin());
    abandoned_.emplace_back(slot, std::move(conn));
  }
  return false;
}

bool KvWorkload::ensure_connected(Clock::time_point deadline) {
  while (!conn_.is_open()) {
    for (int i = 0; i < 2 && !conn_.is_open(); ++i) try_slot((preferred_slot_ + i) % 2);
    if (conn_.is_open()) return true;
    poll_abandoned();
    if (stop_ || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::optional<std::string> KvWorkload::command(const std::string& line) {
  if (!conn_.send_line(line)) {
    abandon();
    return std::nullopt;
  }
  auto reply = conn_.read_line(options_.reply_timeout);
  if (!reply) {
    abandon();
    return std::nullopt;
  }
  record(slot_, *reply, false);
  return reply;
}

void KvWorkload::run() {
  std::uniform_int_distribution<int> op(0, 2);
  while (!stop_) {
    poll_abandoned();
    if (!ensure_connected(Clock::now() + std::chrono::milliseconds(200))) continue;
    std::string key_to_read;
    {
      std::lock_guard lock(mutex_);
      const auto& acked = checker_.acked_keys();
      if (op(rng_) == 0 && !acked.empty())
        key_to_read = acked[std::uniform_int_distribution<size_t>(0, acked.size() - 1)(rng_)];
    }
    if (!key_to_read.empty()) {
      auto reply = command("GET " + key_to_read);
      if (reply) {
        std::lock_guard lock(mutex_);
        if (reply->rfind("ERR", 0) == 0) {
          ++unexpected_;
          extra_problems_.push_back(fmt::format("GET {}: unexpected reply \"{}\"", key_to_read, *reply));
        } else {
          checker_.read(key_to_read, *reply == "NOT_FOUND" ? std::nullopt : std::optional<std::string>(*reply));
        }
      }
    } else {
      const uint64_t n = counter_++;
      const std::string key = fmt::format("{}{}", options_.key_prefix, n);
      const std::string value = fmt::format("v{}-{}-{:08x}", options_.seed, n, static_cast<uint32_t>(rng_()));
      {
        std::lock_guard lock(mutex_);
        checker_.write_sent(key, value);
      }
      auto reply = command(fmt::format("SET {} {}", key, value));
      if (reply) {
        std::lock_guard lock(mutex_);
        if (*reply == "OK") {
          checker_.write_acked(key);
        } else {
          ++unexpected_;
          if (extra_problems_.size() < 20)
            extra_problems_.push_back(fmt::format("SET {}: unexpected reply \"{}\"", key, *reply));
        }
      }
    }
    std::this_thread::sleep_for(options_.op_interval);
  }
}

std::string KvWorkload::final_sweep(std::chrono::milliseconds timeout) {
  stop();
  stop_ = false;  // ensure_connected() checks it
  const auto deadline = Clock::now() + timeout;
  std::vector<std::string> keys;
  {
    std::lock_guard lock(mutex_);
    keys = checker_.keys_to_verify();
  }
  for (size_t i = 0; i < keys.size();) {
    poll_abandoned();
    if (!ensure_connected(deadline)) return fmt::format("no node answered the final read-back within {} ms", timeout.count());
    auto reply = command("GET " + keys[i]);
    if (!reply) continue;  // moved to another node: read this key again there
    std::lock_guard lock(mutex_);
    if (reply->rfind("ERR", 0) == 0) {
      ++unexpected_;
      extra_problems_.push_back(fmt::format("GET {}: unexpected reply \"{}\"", keys[i], *reply));
    } else {
      checker_.read(keys[i], *reply == "NOT_FOUND" ? std::nullopt : std::optional<std::string>(*reply), true);
    }
    ++i;
  }
  for (size_t i = 0; i < keys.size();) {
    if (!ensure_connected(deadline)) return "no node answered while deleting the drill's keys";
    auto reply = command("DEL " + keys[i]);
    if (!reply) continue;
    ++i;
  }
  poll_abandoned();
  return "";
}

uint64_t KvWorkload::acked() const {
  std::lock_guard lock(mutex_);
  return checker_.acked_keys().size();
}

std::vector<ReplyEvent> KvWorkload::replies() const {
  std::lock_guard lock(mutex_);
  return replies_;
}

SetFullCounts KvWorkload::counts() const {
  std::lock_guard lock(mutex_);
  return checker_.counts();
}

std::vector<std::string> KvWorkload::problems() const {
  std::lock_guard lock(mutex_);
  auto all = checker_.problems();
  all.insert(all.end(), extra_problems_.begin(), extra_problems_.end());
  return all;
}

uint64_t KvWorkload::unexpected() const {
  std::lock_guard lock(mutex_);
  return unexpected_;
}

uint64_t KvWorkload::repeated_lines() const {
  std::lock_guard lock(mutex_);
  return repeated_;
}

}  // namespace tandem::drills
