#include "drills/setfull.h"

#include <stdexcept>

#include <fmt/format.h>

namespace tandem::drills {

namespace {
constexpr size_t kMaxProblemLines = 20;  // enough to debug, bounded for long runs
}

void SetFullChecker::problem(std::string text) {
  if (problems_.size() < kMaxProblemLines) problems_.push_back(std::move(text));
}

void SetFullChecker::write_sent(const std::string& key, const std::string& value) {
  if (!writes_.emplace(key, Write{value}).second)
    throw std::logic_error(fmt::format("set-full: key {} written twice; every write needs a fresh key", key));
  ++counts_.attempted;
}

void SetFullChecker::write_acked(const std::string& key) {
  auto it = writes_.find(key);
  if (it == writes_.end()) throw std::logic_error(fmt::format("set-full: ack for key {} that was never sent", key));
  if (++it->second.acks == 1) {
    acked_order_.push_back(key);
  } else {
    ++counts_.duplicate_acks;
  }
}

void SetFullChecker::read(const std::string& key, const std::optional<std::string>& value, bool final_sweep) {
  ++counts_.reads;
  auto it = writes_.find(key);
  if (it == writes_.end()) {
    if (value) {
      ++counts_.phantoms;
      problem(fmt::format("phantom: key {} was never written, read \"{}\"", key, *value));
    }
    return;
  }
  Write& w = it->second;
  if (value && *value != w.value) {
    ++counts_.phantoms;
    problem(fmt::format("phantom: key {} written with \"{}\", read \"{}\"", key, w.value, *value));
  }
  if (w.acks > 0 && (!value || *value != w.value) && !w.lost) {
    w.lost = true;
    ++counts_.acked_lost;
    problem(fmt::format("lost: key {} acked with \"{}\", read {}", key, w.value,
                        value ? fmt::format("\"{}\"", *value) : std::string("NOT_FOUND")));
  }
  if (final_sweep && w.acks == 0 && value && *value == w.value) indeterminate_found_.insert(key);
}

std::vector<std::string> SetFullChecker::keys_to_verify() const {
  std::vector<std::string> keys;
  keys.reserve(writes_.size());
  for (const auto& [key, w] : writes_) keys.push_back(key);
  return keys;
}

SetFullCounts SetFullChecker::counts() const {
  SetFullCounts c = counts_;
  c.acked = acked_order_.size();
  c.indeterminate = c.attempted - c.acked;
  c.indeterminate_present = indeterminate_found_.size();
  return c;
}

}  // namespace tandem::drills
