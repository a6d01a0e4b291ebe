#include "vmm-hooks/live.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "vmm/clock.h"
#include "vmm/machine.h"

namespace tandem::hooks {

namespace {
// While idle with no timer armed, wake this often to flush output.
constexpr auto kIdleWakeup = std::chrono::milliseconds(100);
}  // namespace

Live::Live(ConsolePort& console, LiveOptions options) : console_(console), options_(options) {
  if (options_.poll_interval == 0) throw std::invalid_argument("Live: poll interval must be > 0");
}

uint64_t Live::next_service_icount(uint64_t now) {
  // Service points on a fixed icount grid, so slicing does not depend on history.
  return (now / options_.poll_interval + 1) * options_.poll_interval;
}

void Live::service(vmm::Machine& machine) {
  console_.flush();
  deliver_input(machine);
}

bool Live::deliver_input(vmm::Machine& machine) {
  const size_t space = machine.console_input_space();
  if (pending_input_.size() < space) console_.read_input(pending_input_, space - pending_input_.size());
  if (pending_input_.empty() || space == 0) return false;
  const size_t accepted = machine.console_input(pending_input_);
  pending_input_.erase(pending_input_.begin(), pending_input_.begin() + static_cast<long>(accepted));
  return accepted > 0;
}

bool Live::idle(vmm::Machine& machine, uint64_t deadline_mtime) {
  console_.flush();
  if (deliver_input(machine)) return true;
  const bool can_take_input = machine.console_input_space() > 0;

  if (deadline_mtime != UINT64_MAX) {
    const uint64_t now = machine.clock().mtime(machine.icount());
    const uint64_t ticks = deadline_mtime > now ? deadline_mtime - now : 0;
    if (options_.interactive && can_take_input) {
      // Sleep the guest's wait in real time, cut short by a key press.
      // Capped, so a guest arming a timer years ahead does not stall the user for years.
      constexpr uint64_t kMaxSleepTicks = 60 * vmm::kTimebaseHz;
      const auto wait = std::chrono::nanoseconds(std::min(ticks, kMaxSleepTicks) * (1'000'000'000 / vmm::kTimebaseHz));
      const auto start = std::chrono::steady_clock::now();
      if (console_.wait_input(wait) && deliver_input(machine)) {
        const auto slept = std::chrono::steady_clock::now() - start;
        const uint64_t slept_ticks = static_cast<uint64_t>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(slept).count() /
            (1'000'000'000 / vmm::kTimebaseHz));
        machine.clock().advance(std::min(slept_ticks, ticks));
        return true;
      }
    }
    machine.clock().advance(ticks);
    return true;
  }

  // No timer: only console input can wake the guest.
  if (!can_take_input) return false;  // it does not drain the UART: nothing will change
  while (!console_.input_closed() && !interrupted()) {
    if (console_.wait_input(kIdleWakeup) && deliver_input(machine)) return true;
  }
  return false;
}

void Live::console_output(uint64_t /*icount*/, uint8_t byte) {
  output_byte_[0] = byte;
  console_.write_output(output_byte_);
}

void Live::entropy(uint64_t /*icount*/, std::span<uint8_t> out) {
  // Live needs no replay, so the host's entropy goes straight in.
  const int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  size_t done = 0;
  while (fd >= 0 && done < out.size()) {
    const ssize_t n = ::read(fd, out.data() + done, out.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  if (fd >= 0) ::close(fd);
  if (done < out.size()) std::memset(out.data() + done, 0, out.size() - done);
}

void Live::flush() { console_.flush(); }

}  // namespace tandem::hooks
