#pragma once
// The console on the process's stdin/stdout. When stdin is a terminal it is put in raw mode
// (so keys reach the guest unbuffered and Ctrl-C goes to the guest's console as a byte is
// NOT wanted for a standalone run: ISIG stays on) and restored on destruction.
#include <termios.h>

#include <memory>
#include <string>

#include "vmm-hooks/console_port.h"

namespace tandem::console {

class StdioConsole : public hooks::ConsolePort {
 public:
  explicit StdioConsole(int in_fd = 0, int out_fd = 1);
  ~StdioConsole() override;

  size_t read_input(std::vector<uint8_t>& out, size_t max) override;
  bool wait_input(std::chrono::nanoseconds timeout) override;
  bool input_closed() const override { return in_closed_; }
  void write_output(std::span<const uint8_t> bytes) override;
  void flush() override;

 private:
  int in_fd_;
  int out_fd_;
  bool in_closed_ = false;
  bool raw_ = false;
  termios saved_{};
  std::string out_buffer_;
};

// `stdio` or `tcp:HOST:PORT` (HOST must be a numeric address, e.g. 127.0.0.1).
// Throws std::invalid_argument on a malformed spec, std::runtime_error if it cannot listen.
std::unique_ptr<hooks::ConsolePort> open_console(const std::string& spec);

}  // namespace tandem::console
