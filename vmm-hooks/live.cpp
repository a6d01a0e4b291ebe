#include "vmm-hooks/live.h"

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "vmm/clock.h"
#include "vmm/machine.h"

namespace tandem::hooks {

namespace {
// While idle with no timer armed, wake this often to flush output.
constexpr auto kIdleWakeup = std::chrono::milliseconds(100);
// Seeds the Live world's entropy stream (any fixed value: it only has to stay the same).
constexpr uint64_t kEntropySeed = 0x74616e64656d2d72;  // "tandem-r"
// Received frames moved into the NIC per service point at most (the rest wait for the next).
constexpr unsigned kMaxFramesPerService = 64;
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
  deliver_frames(machine);
}

bool Live::deliver_frames(vmm::Machine& machine) {
  if (!options_.net) return false;
  bool any = false;
  for (unsigned n = 0; n < kMaxFramesPerService && machine.net_can_receive() && options_.net->receive(frame_); ++n) {
    machine.net_input(frame_);
    any = true;
  }
  return any;
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
  NetPort* net = options_.net;
  // Both run: console input and frames that arrived together both go in.
  const auto deliver = [&] {
    const bool took_input = deliver_input(machine);
    const bool took_frames = deliver_frames(machine);
    return took_input || took_frames;
  };
  if (deliver()) return true;
  const bool can_take_input = machine.console_input_space() > 0;

  if (deadline_mtime != UINT64_MAX) {
    const uint64_t now = machine.clock().mtime(machine.icount());
    const uint64_t ticks = deadline_mtime > now ? deadline_mtime - now : 0;
    if ((options_.interactive && can_take_input) || net) {
      // Sleep the guest's wait in real time, cut short by a key press or a frame.
      // Capped, so a guest arming a timer years ahead does not stall the user for years.
      constexpr uint64_t kMaxSleepTicks = 60 * vmm::kTimebaseHz;
      const auto wait = std::chrono::nanoseconds(std::min(ticks, kMaxSleepTicks) * (1'000'000'000 / vmm::kTimebaseHz));
      const auto start = std::chrono::steady_clock::now();
      if (wait_console_or_net(console_, net, machine.net_can_receive(), wait) && deliver()) {
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

  // No timer: only console input or a frame can wake the guest.
  if (!can_take_input && !net) return false;  // it does not drain the UART: nothing will change
  while ((net || !console_.input_closed()) && !interrupted()) {
    if (wait_console_or_net(console_, net, machine.net_can_receive(), kIdleWakeup)) {
      if (deliver()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // input the guest cannot take yet
    }
  }
  return false;
}

void Live::output(vmm::OutputChannel channel, uint64_t /*icount*/, std::span<const uint8_t> bytes) {
  if (channel == vmm::OutputChannel::Console) {
    console_.write_output(bytes);
  } else if (options_.net) {
    options_.net->send(bytes);
  } else {
    ++net_frames_dropped_;
  }
}

void Live::entropy(uint64_t icount, std::span<uint8_t> out) {
  // Deterministic, unlike the Recorder's (which logs host entropy for its replayer): the
  // bytes are a function of the icount and the request's ordinal within that instruction,
  // so two runs of the same guest, and a run restored from a snapshot, see the same bytes.
  // A guest that seeds itself from its virtio-rng (Linux does at boot) would otherwise make
  // every `tandem run` differ. Not secret: `tandem run` is for tests and development.
  if (icount != entropy_icount_) {
    entropy_icount_ = icount;
    entropy_requests_ = 0;
  }
  const uint64_t request = entropy_requests_++;
  for (size_t at = 0; at < out.size(); at += sizeof(uint64_t)) {
    const uint64_t input[3] = {icount, request, at};
    const uint64_t word = XXH3_64bits_withSeed(input, sizeof input, kEntropySeed);
    std::memcpy(out.data() + at, &word, std::min(sizeof word, out.size() - at));
  }
}

void Live::flush() { console_.flush(); }

}  // namespace tandem::hooks
