#include "net/admission.h"

#include <fmt/format.h>

#include <algorithm>
#include <stdexcept>

namespace tandem::net {

namespace {

// IPv4-mapped IPv6 peers (a dual-stack listener) count as their IPv4 address.
boost::asio::ip::address canonical(const boost::asio::ip::address& a) {
  if (a.is_v6() && a.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, a.to_v6());
  }
  return a;
}

}  // namespace

struct Admission::State {
  AdmissionLimits limits;
  std::vector<boost::asio::ip::address> allow;
  mutable std::mutex mutex;
  size_t pending = 0;
  std::map<boost::asio::ip::address, size_t> by_address;
  uint64_t refused = 0;
};

Admission::Admission(AdmissionLimits limits) : state_(std::make_shared<State>()) {
  if (limits.max_pending == 0 || limits.max_pending_per_address == 0) {
    throw std::invalid_argument("connection caps must be positive");
  }
  for (const auto& text : limits.allow) {
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(text, ec);
    if (ec) throw std::invalid_argument(fmt::format("allow-list entry \"{}\" is not a numeric IP address", text));
    state_->allow.push_back(canonical(address));
  }
  state_->limits = std::move(limits);
}

std::optional<Admission::Slot> Admission::admit(const boost::asio::ip::address& raw_from, std::string& why) {
  const auto from = canonical(raw_from);
  State& s = *state_;
  std::lock_guard lock(s.mutex);
  if (!s.allow.empty() && std::find(s.allow.begin(), s.allow.end(), from) == s.allow.end()) {
    why = fmt::format("{} is not in the allow-list", from.to_string());
  } else if (s.by_address[from] >= s.limits.max_pending_per_address) {
    why = fmt::format("too many unauthenticated connections from {} ({})", from.to_string(), s.by_address[from]);
  } else if (s.pending >= s.limits.max_pending) {
    why = fmt::format("too many unauthenticated connections ({})", s.pending);
  } else {
    ++s.pending;
    ++s.by_address[from];
    return Slot(state_, from);
  }
  if (s.by_address[from] == 0) s.by_address.erase(from);
  ++s.refused;
  return std::nullopt;
}

size_t Admission::pending() const {
  std::lock_guard lock(state_->mutex);
  return state_->pending;
}

uint64_t Admission::refused() const {
  std::lock_guard lock(state_->mutex);
  return state_->refused;
}

Admission::Slot::Slot(Slot&& other) noexcept : state_(std::move(other.state_)), from_(other.from_) {}

Admission::Slot& Admission::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    release();
    state_ = std::move(other.state_);
    from_ = other.from_;
  }
  return *this;
}

void Admission::Slot::release() {
  if (!state_) return;
  {
    std::lock_guard lock(state_->mutex);
    --state_->pending;
    if (auto it = state_->by_address.find(from_); it != state_->by_address.end() && --it->second == 0) {
      state_->by_address.erase(it);
    }
  }
  state_.reset();
}

}  // namespace tandem::net
