#include "netsim/event_log.h"

#include <ctime>
#include <fmt/format.h>
#include <stdexcept>

namespace netsim {

EventLog::EventLog() : start_(Clock::now()) {}

EventLog::~EventLog() {
  if (file_) std::fclose(file_);
}

void EventLog::open_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "a");
  if (!f) throw std::runtime_error(fmt::format("cannot open event log '{}'", path));
  std::lock_guard lock(mutex_);
  if (file_) std::fclose(file_);
  file_ = f;
}

void EventLog::emit(const std::string& event, nlohmann::json fields) {
  const auto now = Clock::now();
  const auto wall = std::chrono::system_clock::now();
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(wall.time_since_epoch()).count();
  const std::time_t seconds = static_cast<std::time_t>(micros / 1'000'000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);

  // Ordered, so every line starts with t, wall, event: easier to read beside other logs.
  nlohmann::ordered_json line = nlohmann::ordered_json::object();
  line["t"] = std::chrono::duration<double>(now - start_).count();
  line["wall"] = fmt::format("{}.{:06d}Z", stamp, micros % 1'000'000);
  line["event"] = event;
  for (auto& [key, value] : fields.items()) line[key] = value;

  std::string text = line.dump();
  std::lock_guard lock(mutex_);
  if (file_) {
    std::fwrite(text.data(), 1, text.size(), file_);
    std::fputc('\n', file_);
    std::fflush(file_);
  }
  recent_.push_back(std::move(text));
  if (recent_.size() > kKeep) recent_.pop_front();
}

std::vector<nlohmann::json> EventLog::recent() const {
  std::lock_guard lock(mutex_);
  std::vector<nlohmann::json> out;
  out.reserve(recent_.size());
  for (const auto& text : recent_) out.push_back(nlohmann::json::parse(text));
  return out;
}

}  // namespace netsim
