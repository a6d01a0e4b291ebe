#pragma once
// Where the guest's console goes: the terminal (stdio) or a TCP socket. A Live or Recorder
// World reads input from a ConsolePort at its service points and writes the guest's output
// to it. Reads never block the machine; waits happen only while the guest idles.
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace tandem::hooks {

class ConsolePort {
 public:
  virtual ~ConsolePort() = default;
  // Appends up to `max` available input bytes to `out` without blocking; returns the count.
  virtual size_t read_input(std::vector<uint8_t>& out, size_t max) = 0;
  // Waits until input is available or `timeout` passes; true if input is available.
  virtual bool wait_input(std::chrono::nanoseconds timeout) = 0;
  // True when no input can ever arrive again (stdin reached EOF). A TCP console never
  // closes: another client may connect.
  virtual bool input_closed() const = 0;
  virtual void write_output(std::span<const uint8_t> bytes) = 0;
  virtual void flush() {}
};

// `stdio` or `tcp:HOST:PORT` (HOST must be a numeric address, e.g. 127.0.0.1).
// Throws std::invalid_argument on a malformed spec, std::runtime_error if it cannot listen.
std::unique_ptr<ConsolePort> open_console(const std::string& spec);

}  // namespace tandem::hooks
