// CPU-only throughput benchmark: runs a guest image on a bare hart (RAM, test finisher and a
// console sink; no timers, no World) and prints the retired instructions per second.
// Usage: tandem_cpu_bench GUEST.elf [--repeat N]
// TANDEM_FPU_ENGINE=software runs every F/D operation on the software path (to measure what
// the host SSE/FMA3 path buys). TANDEM_CPU_ENGINE=jit runs the translator (docs/translator.md).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vmm/bus.h"
#include "vmm/clock.h"
#include "vmm/cpu/fpu.h"
#include "vmm/cpu/hart.h"
#include "vmm/devices/test_finisher.h"
#include "vmm/guest_memory.h"
#include "vmm/loader.h"

namespace {

using namespace tandem::vmm;

// A 16550 stand-in that swallows output and always reports "transmitter empty".
class ConsoleSink : public Device {
 public:
  std::string_view name() const override { return "console-sink"; }
  bool read(uint64_t offset, unsigned, uint64_t& value) override {
    value = offset == 5 ? 0x60 : 0;  // LSR: THRE | TEMT
    return true;
  }
  bool write(uint64_t, unsigned, uint64_t) override { return true; }
  void save(StateWriter&) const override {}
  void restore(StateReader&) override {}
};

struct Result {
  uint64_t instructions = 0;
  double seconds = 0;
  bool passed = false;
};

Result run_once(const std::string& path) {
  GuestMemory ram(0x8000'0000, 128ull << 20);
  Bus bus(ram);
  TestFinisher finisher(bus);
  ConsoleSink console;
  bus.map(0x10'0000, 0x1000, finisher);
  bus.map(0x1000'0000, 0x100, console);
  VirtualClock clock;
  Hart hart(bus, clock);
  const LoadedImage image = load_image(path, ram);
  hart.reset(image.entry);
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    const HartStop stop = hart.run(hart.icount() + 100'000'000);
    if (stop == HartStop::Wfi) break;
    if (stop == HartStop::Event && bus.stop_requested()) break;
  }
  const auto end = std::chrono::steady_clock::now();
  Result r;
  r.instructions = hart.icount();
  r.seconds = std::chrono::duration<double>(end - start).count();
  r.passed = finisher.result() == FinisherResult::Pass;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s GUEST.elf [--repeat N]\n", argv[0]);
    return 2;
  }
  if (const char* e = std::getenv("TANDEM_FPU_ENGINE"); e && std::string(e) == "software") {
    fpu::set_engine(fpu::Engine::Software);
  }
  if (const char* e = std::getenv("TANDEM_CPU_ENGINE")) {
    CpuEngine engine{};
    if (!parse_cpu_engine(e, engine)) {
      std::fprintf(stderr, "TANDEM_CPU_ENGINE: expected interp or jit, got '%s'\n", e);
      return 2;
    }
    set_default_cpu_engine(engine);
  }
  int repeat = 1;
  if (argc >= 4 && std::strcmp(argv[2], "--repeat") == 0) repeat = std::max(1, std::atoi(argv[3]));
  try {
    Result best;
    for (int i = 0; i < repeat; ++i) {
      const Result r = run_once(argv[1]);
      if (!r.passed) {
        std::fprintf(stderr, "guest did not pass (icount %llu)\n",
                     static_cast<unsigned long long>(r.instructions));
        return 1;
      }
      if (i == 0 || r.seconds < best.seconds) best = r;
    }
    std::printf("instructions=%llu wall_s=%.3f mips=%.1f\n",
                static_cast<unsigned long long>(best.instructions), best.seconds,
                best.instructions / best.seconds / 1e6);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 2;
  }
  return 0;
}
