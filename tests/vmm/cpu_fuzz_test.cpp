// Random-instruction fuzzing: millions of random 32-bit and 16-bit instruction words,
// random register values, random CSR writes (paging with garbage page tables, privilege
// changes, interrupt enables) and a device to poke. The hart must never crash, never touch
// host memory outside the guest (this test also runs under ASan/UBSan via make test-asan),
// never overshoot its budget, and must be deterministic: the same seed gives the same
// states.
#include <cstdlib>
#include <random>

#include "tests/vmm/cpu_test_support.h"

namespace tandem::vmm::test {
namespace {

class NullDevice : public Device {
 public:
  std::string_view name() const override { return "null"; }
  bool read(uint64_t offset, unsigned, uint64_t& value) override {
    value = offset * 0x9e3779b97f4a7c15ull;
    return (offset & 0xf00) != 0xf00;  // part of the window faults
  }
  bool write(uint64_t offset, unsigned, uint64_t) override { return (offset & 0xf00) != 0xf00; }
  void save(StateWriter&) const override {}
  void restore(StateReader&) override {}
};

constexpr uint16_t kKnownCsrs[] = {0x100, 0x104, 0x105, 0x106, 0x140, 0x141, 0x142, 0x143,
                                   0x144, 0x180, 0x300, 0x301, 0x302, 0x303, 0x304, 0x305,
                                   0x306, 0x340, 0x341, 0x342, 0x343, 0x344, 0x3a0, 0x3b0,
                                   0xb00, 0xb02, 0xc00, 0xc01, 0xc02, 0xf14, 0x10a, 0x30a,
                                   0x001, 0x002, 0x003};
constexpr uint32_t kMajorOpcodes[] = {0x03, 0x0f, 0x13, 0x17, 0x1b, 0x23, 0x2f, 0x33,
                                      0x37, 0x3b, 0x63, 0x67, 0x6f, 0x73,
                                      0x07, 0x27, 0x43, 0x47, 0x4b, 0x4f, 0x53, 0x53};

class CpuFuzzTest : public HartTest {
 protected:
  static constexpr uint64_t kFuzz = kRamBase + 0x20'0000;  // random code region
  static constexpr uint64_t kFuzzSize = 64 * 1024;
  static constexpr uint64_t kHandler = kRamBase + 0x10'0000;
  static constexpr uint64_t kDevice = 0x1000'0000;

  uint32_t random_word(std::mt19937_64& rng) {
    const uint64_t r = rng();
    switch (r % 4) {
      case 0: return static_cast<uint32_t>(rng());  // anything (often compressed pairs)
      case 1: {                                     // a valid major opcode, random fields
        const uint32_t opc = kMajorOpcodes[(r >> 8) % std::size(kMajorOpcodes)];
        return (static_cast<uint32_t>(rng()) & ~0x7fu) | opc;
      }
      case 2: {  // a CSR instruction on a real CSR
        const uint32_t csr = kKnownCsrs[(r >> 8) % std::size(kKnownCsrs)];
        return csr << 20 | (static_cast<uint32_t>(rng()) & 0xfff80u) | 0x73;
      }
      default: {  // two compressed instructions
        return (static_cast<uint32_t>(rng()) & ~0x00030003u) | ((r >> 8) % 3) | (((r >> 10) % 3) << 16);
      }
    }
  }

  void randomize(std::mt19937_64& rng, uint64_t addr, uint64_t len) {
    std::vector<uint8_t> bytes(len);
    for (uint64_t i = 0; i + 4 <= len; i += 4) {
      const uint32_t w = random_word(rng);
      std::memcpy(bytes.data() + i, &w, 4);
    }
    ASSERT_TRUE(ram_.write(addr, bytes));
  }

  uint64_t random_value(std::mt19937_64& rng) {
    const uint64_t r = rng();
    switch (r % 6) {
      case 0: return kFuzz + (rng() % kFuzzSize);           // into the code
      case 1: return kRamBase + (rng() % kRamSize);         // anywhere in RAM
      case 2: return kDevice + (rng() % 0x1000);            // the device
      case 3: return rng() % 4096;                          // small
      case 4: return kRamBase + kRamSize - (rng() % 16);    // the end of RAM
      default: return rng();
    }
  }

  // Trap handler: skip 4 bytes past the faulting pc and return.
  void install_handler() {
    Program h;
    h << rv::csrw(0x340, t0) << rv::csrr(t0, 0x341) << rv::addi(t0, t0, 4) << rv::csrw(0x341, t0)
      << rv::csrr(t0, 0x340) << rv::kMret;
    load(kHandler, h);
    hart_.reset(kFuzz);
    write_csr(0x305, kHandler);
    write_csr(0x300, 1u << 13);  // FS = Initial: F/D instructions run (random CSR writes may turn it off)
  }

  // Runs `rounds` rounds and returns a digest of the state after each.
  std::vector<uint64_t> fuzz(uint64_t seed, int rounds, uint64_t& executed) {
    std::mt19937_64 rng(seed);
    randomize(rng, kFuzz, kFuzzSize);
    install_handler();
    std::vector<uint64_t> digests;
    executed = 0;
    for (int round = 0; round < rounds; ++round) {
      if (round % 8 == 0) randomize(rng, kFuzz + (rng() % 16) * 4096, 4096);
      for (unsigned r = 1; r < 32; ++r) hart_.set_reg(r, random_value(rng));
      hart_.set_pc(kFuzz + 2 * (rng() % (kFuzzSize / 2)));
      const uint64_t start = hart_.icount();
      const uint64_t stop = start + 2000;
      const HartStop why = hart_.run(stop);
      EXPECT_LE(hart_.icount(), stop) << "overshot the budget in round " << round;
      EXPECT_EQ(hart_.reg(0), 0u);
      executed += hart_.icount() - start;
      uint64_t digest = hart_.icount() * 31 + hart_.pc();
      for (unsigned r = 1; r < 32; ++r) digest = digest * 1000003 ^ hart_.reg(r);
      digest ^= static_cast<uint64_t>(hart_.privilege()) << 60;
      digests.push_back(digest);
      // Random code may have made traps unrecoverable (mtvec, satp, WFI): start afresh.
      if (why != HartStop::Budget || round % 16 == 15) {
        bus_.clear_stop();
        install_handler();
      }
    }
    return digests;
  }
};

TEST_F(CpuFuzzTest, RandomInstructionsNeverCrashAndAreDeterministic) {
  NullDevice device;
  bus_.map(kDevice, 0x1000, device);
  // TANDEM_FUZZ_SEED=N explores other seeds (the default keeps CI reproducible).
  const char* seed_env = std::getenv("TANDEM_FUZZ_SEED");
  const uint64_t seed = seed_env ? std::strtoull(seed_env, nullptr, 0) : 0x5eed;
  uint64_t executed_first = 0, executed_second = 0;
  const auto first = fuzz(seed, 1500, executed_first);
  EXPECT_GT(executed_first, 1'000'000u) << "the fuzzer should retire millions of instructions";

  // The same seed gives the same states, round by round.
  const auto second = [&] {
    // Re-run on the same fixture after clearing RAM: determinism of the whole sequence.
    ram_.clear();
    Program halt;
    halt << rv::kWfi << rv::jal(0, -4);
    load(kHalt, halt);
    hart_.set_icount(0);
    return fuzz(seed, 1500, executed_second);
  }();
  EXPECT_EQ(executed_first, executed_second);
  ASSERT_EQ(first.size(), second.size());
  for (size_t i = 0; i < first.size(); ++i) {
    ASSERT_EQ(first[i], second[i]) << "same seed, different state after round " << i;
  }
}

}  // namespace
}  // namespace tandem::vmm::test
