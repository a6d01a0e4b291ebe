#pragma once
// The guest's console as the non-determinism boundary sees it: where console input comes
// from and console output goes. A Live or Recorder World reads input from a ConsolePort at
// its service points; output reaches it as an OutputPort (directly, or through the pair's
// output gate). Reads never block the machine; waits happen only while the guest idles.
// The implementations (stdio, TCP) are in console/.
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "vmm-hooks/output.h"

namespace tandem::hooks {

class ConsolePort : public OutputPort {
 public:
  // Appends up to `max` available input bytes to `out` without blocking; returns the count.
  virtual size_t read_input(std::vector<uint8_t>& out, size_t max) = 0;
  // Waits until input is available or `timeout` passes; true if input is available.
  virtual bool wait_input(std::chrono::nanoseconds timeout) = 0;
  // True when no input can ever arrive again (stdin reached EOF). A TCP console never
  // closes: another client may connect.
  virtual bool input_closed() const = 0;
  // OutputPort: write_output(bytes), flush().
};

}  // namespace tandem::hooks
