#pragma once
// Guests and a deterministic World for the checkpoint tests.
#include <cstdint>
#include <deque>
#include <fstream>
#include <span>
#include <string>
#include <vector>

#include "vmm/machine.h"

namespace tandem::checkpoint::testing {

// A World with a scripted console: queued input is pushed into the UART at every service
// point (a fixed icount grid, so two machines fed the same script stay in step) and
// when the guest idles; output is captured. With no input left an idle guest stops
// (Exit::Idle) until more is queued.
class ScriptWorld final : public vmm::World {
 public:
  static constexpr uint64_t kServiceEvery = 4096;

  void queue_input(const std::string& bytes) { input_.insert(input_.end(), bytes.begin(), bytes.end()); }
  std::string printed;

  uint64_t next_service_icount(uint64_t now) override { return (now / kServiceEvery + 1) * kServiceEvery; }
  void service(vmm::Machine& m) override { push(m); }
  bool idle(vmm::Machine& m, uint64_t) override { return push(m) > 0; }
  void output(vmm::OutputChannel, uint64_t, std::span<const uint8_t> bytes) override {
    printed.append(bytes.begin(), bytes.end());
  }
  void entropy(uint64_t icount, std::span<uint8_t> out) override {
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(icount + i);
  }

 private:
  size_t push(vmm::Machine& m) {
    const size_t n = std::min(input_.size(), m.console_input_space());
    if (n == 0) return 0;
    std::vector<uint8_t> chunk(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(n));
    const size_t taken = m.console_input(chunk);
    input_.erase(input_.begin(), input_.begin() + static_cast<std::ptrdiff_t>(taken));
    return taken;
  }
  std::deque<uint8_t> input_;
};

// A raw RV64 image that walks a region of RAM forever, storing xorshift64 values with a
// 2040-byte stride (so every pass touches every page, at shifting offsets):
//   a0 = DRAM + 1 MiB, a2 = span - 8, t1 = offset, t2 = value
inline std::vector<uint8_t> walker_image(uint32_t span_bytes) {
  enum : uint32_t { zero = 0, t0 = 5, t1 = 6, t2 = 7, a0 = 10, a2 = 12, a3 = 13 };
  std::vector<uint32_t> code;
  auto r_type = [&](uint32_t f7, uint32_t rs2, uint32_t rs1, uint32_t f3, uint32_t rd) {
    code.push_back((f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x33);
  };
  auto i_type = [&](int32_t imm, uint32_t rs1, uint32_t f3, uint32_t rd) {
    code.push_back((static_cast<uint32_t>(imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | 0x13);
  };
  code.push_back((0x100u << 12) | (a0 << 7) | 0x17);              // auipc a0, 0x100
  code.push_back(((span_bytes >> 12) << 12) | (a2 << 7) | 0x37);  // lui a2, span >> 12
  i_type(-8, a2, 0, a2);                                          // addi a2, a2, -8
  i_type(0, zero, 0, t1);                                         // addi t1, zero, 0
  i_type(1, zero, 0, t2);                                         // addi t2, zero, 1
  // loop:
  r_type(0, t1, a0, 0, t0);                                        // add t0, a0, t1
  code.push_back((t2 << 20) | (t0 << 15) | (3 << 12) | 0x23);      // sd t2, 0(t0)
  i_type(13, t2, 1, a3);                                           // slli a3, t2, 13
  r_type(0, a3, t2, 4, t2);                                        // xor t2, t2, a3
  i_type(7, t2, 5, a3);                                            // srli a3, t2, 7
  r_type(0, a3, t2, 4, t2);                                        // xor t2, t2, a3
  i_type(17, t2, 1, a3);                                           // slli a3, t2, 17
  r_type(0, a3, t2, 4, t2);                                        // xor t2, t2, a3
  i_type(2040, t1, 0, t1);                                         // addi t1, t1, 2040
  r_type(0, a2, t1, 7, t1);                                        // and t1, t1, a2
  const int32_t back = -static_cast<int32_t>(10 * 4);              // jal zero, loop
  const uint32_t o = static_cast<uint32_t>(back);
  code.push_back((((o >> 20) & 1) << 31) | (((o >> 1) & 0x3ff) << 21) | (((o >> 11) & 1) << 20) |
                 (((o >> 12) & 0xff) << 12) | 0x6f);
  std::vector<uint8_t> bytes(code.size() * 4);
  std::memcpy(bytes.data(), code.data(), bytes.size());
  return bytes;
}

inline void write_file(const std::string& path, std::span<const uint8_t> bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace tandem::checkpoint::testing
