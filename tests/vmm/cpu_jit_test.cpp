// The translator against the interpreter (docs/translator.md): the same guest on two harts,
// one per engine, run side by side in slices that end at random icounts (so budgets split
// translated blocks anywhere), with timer interrupts raised at random icounts; after every
// slice the architectural state and the guest memory the programs touch must be identical.
// Then the lockstep cross-check of two whole machines on a Linux boot prefix.
#include <cstdlib>
#include <filesystem>
#include <random>

#include "tests/checkpoint/test_guests.h"
#include "tests/support/linux_images.h"
#include "tests/vmm/cpu_test_support.h"
#include "vmm/cross_check.h"

namespace tandem::vmm::test {
namespace {

constexpr uint64_t kRamBase = 0x8000'0000;
constexpr uint64_t kRamSize = 16ull << 20;
constexpr uint64_t kCode = kRamBase + 0x20'0000;     // random program (and its self-modifications)
constexpr uint64_t kCodeSize = 16 * 1024;
constexpr uint64_t kHandler = kRamBase + 0x10'0000;  // trap handler: skip the instruction
constexpr uint64_t kData = kRamBase + 0x40'0000;     // loads and stores (s0 points here)
constexpr uint64_t kDataSize = 8 * 1024;
constexpr uint64_t kDevice = 0x1000'0000;            // MMIO (s1 points here)
constexpr uint32_t s2 = 18, s3 = 19, s4 = 20;         // code base, stored word, JALR base

class EchoDevice : public Device {
 public:
  std::string_view name() const override { return "echo"; }
  bool read(uint64_t offset, unsigned, uint64_t& value) override {
    value = last_ ^ offset;
    return offset < 0xf00;  // the top of the window faults
  }
  bool write(uint64_t offset, unsigned, uint64_t value) override {
    last_ = value * 3 + offset;
    return offset < 0xf00;
  }
  void save(StateWriter&) const override {}
  void restore(StateReader&) override {}

 private:
  uint64_t last_ = 0;
};

// One hart with its RAM, bus and a device.
struct Rig {
  explicit Rig(CpuEngine engine) : ram(kRamBase, kRamSize), bus(ram), hart(bus, clock) {
    bus.map(kDevice, 0x1000, device);
    hart.set_engine(engine, 1);  // translate every block on its first entry
  }
  GuestMemory ram;
  Bus bus;
  VirtualClock clock;
  EchoDevice device;
  Hart hart;
};

// A random program of blocks: integer and M ops on a pool of registers, loads and stores
// into the data page (some misaligned, some to the device, some to nowhere: faults), stores
// of instructions into the code (self-modifying code), CSR reads of counters, ecall and
// random words (traps in the middle of blocks), each block ending in a branch, JAL or JALR.
class ProgramGen {
 public:
  explicit ProgramGen(uint64_t seed) : rng_(seed) {}

  std::vector<uint32_t> generate() {
    const unsigned blocks = 48;
    const unsigned words = kCodeSize / 4;
    std::vector<uint32_t> code(words, rv::addi(0, 0, 0));
    const unsigned per_block = words / blocks;
    for (unsigned b = 0; b < blocks; ++b) {
      const unsigned start = b * per_block;
      const unsigned len = 2 + static_cast<unsigned>(rng_() % 24);
      for (unsigned i = 0; i < len; ++i) code[start + i] = body_insn(start + i);
      code[start + len] = terminator(start + len, blocks, per_block);
    }
    return code;
  }

  uint32_t body_insn(unsigned index) {
    const uint32_t rd = reg(), a = reg(), b = reg();
    const int32_t imm = static_cast<int32_t>(rng_() % 4096) - 2048;
    const uint32_t shamt = static_cast<uint32_t>(rng_() % 64), shamt32 = shamt & 31;
    switch (rng_() % 40) {
      case 0: return rv::addi(rd, a, imm);
      case 1: return rv::slti(rd, a, imm);
      case 2: return rv::sltiu(rd, a, imm);
      case 3: return rv::xori(rd, a, imm);
      case 4: return rv::ori(rd, a, imm);
      case 5: return rv::andi(rd, a, imm);
      case 6: return rv::slli(rd, a, shamt);
      case 7: return rv::srli(rd, a, shamt);
      case 8: return rv::srai(rd, a, shamt);
      case 9: return rv::addiw(rd, a, imm);
      case 10: return rv::slliw(rd, a, shamt32);
      case 11: return rv::srliw(rd, a, shamt32);
      case 12: return rv::sraiw(rd, a, shamt32);
      case 13: return rv::lui(rd, static_cast<int32_t>(rng_() & 0xfffff));
      case 14: return rv::auipc(rd, static_cast<int32_t>(rng_() & 0xfffff));
      case 15: case 16: {  // OP: base ops and M
        static constexpr uint32_t kF3F7[][2] = {{0, 0}, {0, 0x20}, {1, 0}, {2, 0}, {3, 0},
                                                {4, 0}, {5, 0},    {5, 0x20}, {6, 0}, {7, 0},
                                                {0, 1}, {1, 1},    {2, 1}, {3, 1}, {4, 1},
                                                {5, 1}, {6, 1},    {7, 1}};
        const auto& f = kF3F7[rng_() % std::size(kF3F7)];
        return rv::op(f[1], f[0], rd, a, b);
      }
      case 17: case 18: {  // OP-32: base ops and M
        static constexpr uint32_t kF3F7[][2] = {{0, 0}, {0, 0x20}, {1, 0}, {5, 0}, {5, 0x20},
                                                {0, 1}, {4, 1},    {5, 1}, {6, 1}, {7, 1}};
        const auto& f = kF3F7[rng_() % std::size(kF3F7)];
        return rv::op32(f[1], f[0], rd, a, b);
      }
      case 19: case 20: case 21: case 22: {  // loads from the data page, sometimes misaligned
        const int32_t off = static_cast<int32_t>(rng_() % 2040);
        static constexpr uint32_t kF3[] = {0, 1, 2, 3, 4, 5, 6};
        return rv::i_type(off, s0, kF3[rng_() % 7], rd, 0x03);
      }
      case 23: case 24: case 25: {  // stores into the data page
        const int32_t off = static_cast<int32_t>(rng_() % 2040);
        return rv::s_type(off, b, s0, static_cast<uint32_t>(rng_() % 4), 0x23);
      }
      case 26: {  // device access (MMIO; the window's top faults)
        const int32_t off = static_cast<int32_t>(rng_() % 0x800);
        return rng_() % 2 ? rv::ld(rd, s1, off & ~7) : rv::sw(b, s1, off & ~3);
      }
      case 27: return rv::ld(rd, a, imm);  // anywhere: mostly access faults
      case 28: {                            // self-modifying: store an ALU instruction
        // s2 points into the code; the stored word is t-register arithmetic.
        (void)index;
        return rv::sw(s3, s2, static_cast<int32_t>(rng_() % 512) * 4);
      }
      case 29: return rv::csrr(rd, 0xc02);  // instret: exact icount in translated code
      case 30: return rv::csrr(rd, 0xb00);  // mcycle
      case 31: return rng_() % 8 == 0 ? rv::kEcall : rv::addi(rd, a, 1);
      case 32: return static_cast<uint32_t>(rng_()) | 3u;  // a random 32-bit word
      case 33: return rv::kFence;
      default: return rv::add(rd, a, b);
    }
  }

  uint32_t terminator(unsigned index, unsigned blocks, unsigned per_block) {
    const int32_t target =
        static_cast<int32_t>((rng_() % blocks) * per_block) - static_cast<int32_t>(index);
    const uint32_t a = reg(), b = reg();
    switch (rng_() % 9) {
      case 0: return rv::beq(a, b, target * 4);
      case 1: return rv::bne(a, b, target * 4);
      case 2: return rv::blt(a, b, target * 4);
      case 3: return rv::bge(a, b, target * 4);
      case 4: return rv::bltu(a, b, target * 4);
      case 5: return rv::bgeu(a, b, target * 4);
      case 6: return rv::jal(rng_() % 2 ? uint32_t{ra} : 0u, target * 4);
      case 7: return rv::jalr(ra, s4, static_cast<int32_t>((rng_() % blocks) * per_block * 4) & 0x7ff);
      default: return rv::jal(reg(), target * 4);
    }
  }

 private:
  // Registers the random code may write: everything but s0..s4 (bases) and zero (reads only).
  uint32_t reg() {
    static constexpr uint32_t kPool[] = {0, 1, 5, 6, 7, 10, 11, 12, 13, 14, 15, 16, 17,
                                         28, 29, 30, 31};
    return kPool[rng_() % std::size(kPool)];
  }
  std::mt19937_64 rng_;
};

class CpuJitTest : public ::testing::Test {
 protected:
  CpuJitTest() : interp_(CpuEngine::Interpreter), jit_(CpuEngine::Translator) {}

  void load_both(uint64_t addr, std::span<const uint8_t> bytes) {
    ASSERT_TRUE(interp_.ram.write(addr, bytes));
    ASSERT_TRUE(jit_.ram.write(addr, bytes));
  }

  void start(uint64_t seed) {
    ProgramGen gen(seed);
    const std::vector<uint32_t> code = gen.generate();
    load_both(kCode, {reinterpret_cast<const uint8_t*>(code.data()), code.size() * 4});
    // Handler: skip the faulting (or interrupted) 4-byte instruction, clear MTIP's cause by
    // leaving mip alone (the test lowers the line), return.
    Program h;
    h << rv::csrw(0x340, t0) << rv::csrr(t0, 0x341) << rv::addi(t0, t0, 4) << rv::csrw(0x341, t0)
      << rv::csrr(t0, 0x340) << rv::kMret;
    load_both(kHandler, {h.bytes().data(), h.size()});
    std::mt19937_64 rng(seed * 7 + 1);
    std::vector<uint8_t> data(kDataSize);
    for (auto& byte : data) byte = static_cast<uint8_t>(rng());
    load_both(kData, data);
    for (Rig* r : {&interp_, &jit_}) {
      Hart& h2 = r->hart;
      h2.reset(kCode);
      std::mt19937_64 regs(seed);
      for (unsigned i = 1; i < 32; ++i) h2.set_reg(i, regs() % 3 == 0 ? regs() % 64 : regs());
      h2.set_reg(s0, kData + 64);
      h2.set_reg(s1, kDevice);
      h2.set_reg(s2, kCode);
      h2.set_reg(s3, rv::addi(t3, t4, 5));
      h2.set_reg(s4, kCode);
      set_csr(*r, 0x305, kHandler);                      // mtvec
      set_csr(*r, 0x304, kMipMTIP);                      // mie.MTIE
      set_csr(*r, 0x300, (uint64_t{3} << 11) | (1u << 3));  // MPP = M, MIE
    }
  }

  // Writes a CSR by running csrw from a scratch stub on that rig (outside the compared run).
  static void set_csr(Rig& r, uint16_t csr, uint64_t value) {
    Program p;
    p.li(t6, value) << rv::csrw(csr, t6);
    const uint64_t stub = kRamBase + 0xf0'0000;
    ASSERT_TRUE(r.ram.write(stub, p.bytes()));
    const uint64_t pc = r.hart.pc(), icount = r.hart.icount(), saved = r.hart.reg(t6);
    r.hart.set_pc(stub);
    ASSERT_EQ(r.hart.run(icount + p.size() / 4), HartStop::Budget);
    r.hart.set_pc(pc);
    r.hart.set_icount(icount);
    r.hart.set_reg(t6, saved);
  }

  void expect_same(const std::string& where) {
    Hart& a = interp_.hart;
    Hart& b = jit_.hart;
    ASSERT_EQ(a.icount(), b.icount()) << where;
    ASSERT_EQ(a.pc(), b.pc()) << where;
    for (unsigned i = 0; i < 32; ++i) ASSERT_EQ(a.reg(i), b.reg(i)) << where << " x" << i;
    ASSERT_EQ(a.privilege(), b.privilege()) << where;
    for (uint16_t csr : {0x300, 0x341, 0x342, 0x343, 0x344, 0xb00, 0xb02}) {
      ASSERT_EQ(a.csr(csr), b.csr(csr)) << where << " csr " << std::hex << csr;
    }
    ASSERT_EQ(std::memcmp(interp_.ram.host(kData), jit_.ram.host(kData), kDataSize), 0) << where;
    ASSERT_EQ(std::memcmp(interp_.ram.host(kCode), jit_.ram.host(kCode), kCodeSize), 0) << where;
  }

  // Runs both rigs in slices ending at random icounts; raises and lowers the timer line at
  // random slice boundaries. Returns the instructions run.
  uint64_t run_lockstep(uint64_t seed, int slices) {
    std::mt19937_64 rng(seed ^ 0x5eed);
    for (int i = 0; i < slices; ++i) {
      const uint64_t stop = interp_.hart.icount() + 1 + rng() % 3000;
      const bool timer = rng() % 16 == 0;
      HartStop why[2];
      for (int side = 0; side < 2; ++side) {
        Rig& r = side == 0 ? interp_ : jit_;
        r.hart.set_interrupt_pending(kMipMTIP, timer);
        why[side] = r.hart.run(stop);
      }
      EXPECT_EQ(why[0], why[1]) << "seed " << seed << " slice " << i;
      expect_same("seed " + std::to_string(seed) + " slice " + std::to_string(i));
      if (HasFatalFailure()) return 0;
      if (why[0] != HartStop::Budget) {
        // A WFI or an event: both resume at the slice's end.
        for (Rig* r : {&interp_, &jit_}) {
          r->bus.clear_stop();
          r->hart.set_icount(stop);
        }
      }
    }
    return interp_.hart.icount();
  }

  Rig interp_;
  Rig jit_;
};

TEST(CpuEngine, ParsesItsNamesAndRefusesOthers) {
  CpuEngine e{};
  EXPECT_TRUE(parse_cpu_engine("interp", e));
  EXPECT_EQ(e, CpuEngine::Interpreter);
  EXPECT_TRUE(parse_cpu_engine("jit", e));
  EXPECT_EQ(e, CpuEngine::Translator);
  EXPECT_FALSE(parse_cpu_engine("fast", e));
}

TEST_F(CpuJitTest, TranslatorIsOnWhereTheHostSupportsIt) {
#if defined(__x86_64__)
  EXPECT_EQ(jit_.hart.engine(), CpuEngine::Translator);
#endif
  EXPECT_EQ(interp_.hart.engine(), CpuEngine::Interpreter);
}

TEST_F(CpuJitTest, RandomProgramsMatchTheInterpreterAtEveryRandomStop) {
  uint64_t total = 0;
  for (uint64_t seed = 1; seed <= 24; ++seed) {
    start(seed);
    total += run_lockstep(seed, 150);
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(total, 1'000'000u);
}

TEST_F(CpuJitTest, HotLoopMatchesAndStopsAtTheExactIcount) {
  // sum = Σ i*i for i < 100000 with a load and a store per iteration, stopped at odd icounts.
  Program p;
  p.li(a0, 0).li(a1, 0).li(a2, 100000).li(s0, kData);
  p << rv::mul(t0, a1, a1) << rv::add(a0, a0, t0) << rv::sd(a0, s0, 8) << rv::ld(t1, s0, 8)
    << rv::addi(a1, a1, 1) << rv::blt(a1, a2, -20) << rv::kEcall;
  load_both(kCode, {p.bytes().data(), p.size()});
  for (Rig* r : {&interp_, &jit_}) r->hart.reset(kCode);
  for (uint64_t stop : {7u, 1001u, 77777u, 300001u, 500004u}) {
    EXPECT_EQ(interp_.hart.run(stop), HartStop::Budget);
    EXPECT_EQ(jit_.hart.run(stop), HartStop::Budget);
    EXPECT_EQ(jit_.hart.icount(), stop);
    expect_same("stop " + std::to_string(stop));
  }
}

// Two whole machines, interpreter and translator, booting Linux with state hashes compared
// every 250k instructions (the lockstep cross-check mode of `tandem run --cpu check`).
TEST(CpuJitCrossCheck, LinuxBootPrefixHasTheSameStateHashOnBothEngines) {
  const tandem::test::LinuxImages images = tandem::test::linux_guest_images();
  if (!images.missing.empty()) GTEST_SKIP() << images.missing;
  const BootImages& boot = images.boot;
  MachineConfig config;
  config.mem_bytes = 128ull << 20;
  config.bootargs = "console=ttyS0 printk.time=0";
  checkpoint::testing::ScriptWorld world_a, world_b;
  Machine a(config, world_a), b(config, world_b);
  a.boot(boot);
  b.boot(boot);
  a.hart().set_engine(CpuEngine::Interpreter);
  b.hart().set_engine(CpuEngine::Translator);
  // The kv guest boots in ~27M instructions, then idles waiting for console input.
  const CrossCheckResult r = cross_check(a, b, 250'000, 100'000'000);
  EXPECT_TRUE(r.same) << r.describe();
  EXPECT_GT(r.checks, 50u) << r.describe();
  EXPECT_TRUE(r.exit.exit == Exit::Idle || r.icount == 100'000'000u) << r.describe();
  EXPECT_EQ(world_a.printed, world_b.printed);
  EXPECT_NE(world_a.printed.find("Linux version"), std::string::npos) << world_a.printed;
}

}  // namespace
}  // namespace tandem::vmm::test
