#include "vmm-hooks/net_port.h"

#include <algorithm>
#include <thread>

namespace tandem::hooks {

bool wait_console_or_net(ConsolePort& console, NetPort* net, bool frames_wanted,
                         std::chrono::nanoseconds timeout) {
  if (!net || !frames_wanted) {
    if (!console.input_closed()) return console.wait_input(timeout);
    std::this_thread::sleep_for(timeout);  // nothing to wait on: just let the time pass
    return false;
  }
  // Two sources without a common descriptor: wait on the network in short slices and look
  // at the console between them (console latency at most one slice while networked).
  constexpr std::chrono::nanoseconds kSlice = std::chrono::milliseconds(1);
  const auto end = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (console.wait_input(std::chrono::nanoseconds(0))) return true;
    const auto left = end - std::chrono::steady_clock::now();
    const auto slice = std::clamp<std::chrono::nanoseconds>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(left), std::chrono::nanoseconds(0), kSlice);
    if (net->wait_frame(slice)) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
  }
}

}  // namespace tandem::hooks
