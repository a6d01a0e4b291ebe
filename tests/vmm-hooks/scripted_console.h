#pragma once
// A ConsolePort for tests: input is a script available from the start, output is captured.
#include <string>

#include "vmm-hooks/console_port.h"

namespace tandem::hooks::testing {

class ScriptedConsole : public ConsolePort {
 public:
  explicit ScriptedConsole(std::string input = {}) : input_(std::move(input)) {}
  size_t read_input(std::vector<uint8_t>& out, size_t max) override {
    const size_t n = std::min(max, input_.size() - pos_);
    out.insert(out.end(), input_.begin() + pos_, input_.begin() + pos_ + n);
    pos_ += n;
    return n;
  }
  bool wait_input(std::chrono::nanoseconds) override { return pos_ < input_.size(); }
  bool input_closed() const override { return pos_ == input_.size(); }
  void write_output(std::span<const uint8_t> bytes) override { output.append(bytes.begin(), bytes.end()); }
  std::string output;

 private:
  std::string input_;
  size_t pos_ = 0;
};

}  // namespace tandem::hooks::testing
