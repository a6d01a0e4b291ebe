// `tandem run` as a user sees it: exit statuses, one-line errors for bad input, console on
// stdout, --stats/--state-hash on stderr, and a snapshot taken in one process and restored
// in another reaching the same state hash as an uninterrupted run.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/vmm/rv_asm.h"

namespace {

using namespace tandem::vmm::testing;
using tandem::test::slurp;

struct Outcome {
  int status = -1;  // exit status, or 128+signal
  std::string out;
  std::string err;
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    std::istringstream in(err);
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    return lines;
  }
};

class TandemRun : public ::testing::Test {
 protected:
  TandemRun() {
    dir = std::filesystem::temp_directory_path() / ("tandem_tool_test_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
  }
  ~TandemRun() override { std::filesystem::remove_all(dir); }

  std::string path(const std::string& name) const { return (dir / name).string(); }

  // Runs the binary with stdin from /dev/null; kills it after a generous timeout.
  Outcome run(const std::vector<std::string>& args) {
    const std::string out_path = path("stdout"), err_path = path("stderr");
    const pid_t pid = tandem::test::spawn_process(TANDEM_BIN, args, out_path, err_path);
    Outcome o;
    o.status = tandem::test::wait_exit_status(pid, std::chrono::seconds(120), "tandem");
    o.out = slurp(out_path);
    o.err = slurp(err_path);
    return o;
  }

  std::string image(const std::string& name, const RvAsm& code) {
    const auto p = path(name);
    const auto bytes = code.bytes();
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    return p;
  }
  std::string counter_image() {
    RvAsm a;
    a.auipc(t0, 0x10);
    a.addi(t1, t1, 1);
    a.sd(t1, t0, 0);
    a.j(-8);
    return image("counter.bin", a);
  }
  static void finish(RvAsm& a, int32_t value) {
    a.li(t0, 0x100000);
    a.li(t1, value);
    a.sw(t1, t0, 0);
    a.j(0);
  }
  static std::string hash_of(const Outcome& o) {
    const auto at = o.err.find("state-hash=");
    if (at == std::string::npos) return "<none>";
    return o.err.substr(at + 11, 16);
  }
  // Bad input: status 2 and exactly one line on stderr that contains `fragment`.
  void expect_bad_input(const std::vector<std::string>& args, const std::string& fragment) {
    const Outcome o = run(args);
    EXPECT_EQ(o.status, 2) << o.err;
    const auto lines = o.err_lines();
    EXPECT_EQ(lines.size(), 1u) << o.err;
    EXPECT_NE(o.err.find(fragment), std::string::npos) << o.err;
  }

  std::filesystem::path dir;
};

TEST_F(TandemRun, GuestConsoleGoesToStdoutAndPassIsStatusZero) {
  RvAsm a;
  a.li(t0, 0x10000000);
  for (char c : std::string("hi\n")) {
    a.li(t1, c);
    a.sb(t1, t0, 0);
  }
  finish(a, 0x5555);
  const Outcome o = run({"run", image("hello.bin", a)});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(o.out, "hi\n");
  EXPECT_EQ(o.err, "");
}

TEST_F(TandemRun, GuestFailureCodeBecomesExitStatus) {
  RvAsm a;
  finish(a, (7 << 16) | 0x3333);
  const Outcome o = run({"run", image("fail.bin", a)});
  EXPECT_EQ(o.status, 7);
  EXPECT_NE(o.err.find("failure code 7"), std::string::npos) << o.err;
}

TEST_F(TandemRun, InstructionLimitIsStatusThreeWithStatsLast) {
  const Outcome o = run({"run", "--max-instructions", "5000", "--stats", "--state-hash", counter_image()});
  EXPECT_EQ(o.status, 3) << o.err;
  EXPECT_NE(o.err.find("instruction limit"), std::string::npos) << o.err;
  const auto lines = o.err_lines();
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back().rfind("instructions=5000 wall_s=", 0), 0u) << lines.back();
  EXPECT_NE(lines.back().find(" mips="), std::string::npos);
  EXPECT_EQ(hash_of(o).find_first_not_of("0123456789abcdef"), std::string::npos) << hash_of(o);
}

TEST_F(TandemRun, IdleGuestWithClosedInputIsStatusFour) {
  RvAsm a;
  a.wfi();
  a.j(-4);
  const Outcome o = run({"run", image("sleep.bin", a)});
  EXPECT_EQ(o.status, 4) << o.err;
  EXPECT_NE(o.err.find("idle"), std::string::npos) << o.err;
}

TEST_F(TandemRun, SameGuestTwiceGivesSameHash) {
  const auto img = counter_image();
  const Outcome a = run({"run", "--max-instructions", "300000", "--state-hash", img});
  const Outcome b = run({"run", "--max-instructions", "300000", "--state-hash", img, "--poll-interval", "4099"});
  EXPECT_EQ(hash_of(a), hash_of(b));
  EXPECT_NE(hash_of(a), "<none>");
}

// The translator (--cpu jit) reaches the interpreter's state hash at the same icount, and
// --cpu check runs both side by side; a bad engine name is bad input.
TEST_F(TandemRun, CpuEnginesGiveTheSameHashAndCheckModeAgrees) {
  const auto img = counter_image();
  const Outcome interp = run({"run", "--max-instructions", "300001", "--state-hash", img, "--cpu", "interp"});
  const Outcome jit = run({"run", "--max-instructions", "300001", "--state-hash", img, "--cpu", "jit"});
  EXPECT_EQ(interp.status, 3) << interp.err;
  EXPECT_EQ(jit.status, 3) << jit.err;
  EXPECT_EQ(hash_of(interp), hash_of(jit));
  EXPECT_NE(hash_of(jit), "<none>");
  const Outcome check = run({"run", "--max-instructions", "300001", "--cpu", "check", "--check-every", "9999", img});
  EXPECT_EQ(check.status, 3) << check.err;
  EXPECT_NE(check.err.find("state hashes equal up to icount 300001"), std::string::npos) << check.err;
  const Outcome bad = run({"run", "--cpu", "turbo", img});
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find("--cpu must be"), std::string::npos) << bad.err;
}

TEST_F(TandemRun, SaveInOneProcessRestoreInAnotherMatchesUninterruptedRun) {
  const auto img = counter_image();
  const auto snap = path("snap.bin");
  const Outcome whole = run({"run", "--max-instructions", "250000", "--state-hash", img});
  ASSERT_EQ(whole.status, 3) << whole.err;

  const Outcome first = run({"run", "--max-instructions", "100000", "--save", snap, "--save-at", "100000",
                             "--state-hash", img});
  ASSERT_EQ(first.status, 3) << first.err;
  ASSERT_TRUE(std::filesystem::exists(snap));
  const Outcome second = run({"run", "--restore", snap, "--max-instructions", "250000", "--state-hash"});
  ASSERT_EQ(second.status, 3) << second.err;
  EXPECT_EQ(hash_of(second), hash_of(whole));
  EXPECT_NE(hash_of(first), hash_of(whole));

  // --save-at in the middle of a longer run: the run continues to the same end state.
  const auto snap2 = path("snap2.bin");
  const Outcome through = run({"run", "--max-instructions", "250000", "--save", snap2, "--save-at", "123457",
                               "--state-hash", img});
  EXPECT_EQ(hash_of(through), hash_of(whole));
  const Outcome resumed = run({"run", "--restore", snap2, "--max-instructions", "250000", "--state-hash"});
  EXPECT_EQ(hash_of(resumed), hash_of(whole));
}

TEST_F(TandemRun, BadInputsAreOneLineAndStatusTwo) {
  expect_bad_input({"run", path("missing.elf")}, "cannot open");
  expect_bad_input({"run"}, "GUEST or --bios is required");
  expect_bad_input({"run", "--bogus-flag", counter_image()}, "bogus");
  expect_bad_input({"run", "--mem", "0", counter_image()}, "--mem");
  expect_bad_input({"run", "--mem", "lots", counter_image()}, "mem");
  expect_bad_input({"run", "--save", path("s.bin"), counter_image()}, "--save-at");
  expect_bad_input({"run", "--disk", path("nodisk.img"), counter_image()}, "nodisk.img");
  expect_bad_input({"frobnicate"}, "frobnicate");
  expect_bad_input({"run", "--max-instructions", "10", "--save", path("s.bin"), "--save-at", "20", counter_image()},
                   "--save-at");

  // An ELF for another machine.
  std::vector<uint8_t> x86(64, 0);
  const uint8_t ident[] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
  std::copy(std::begin(ident), std::end(ident), x86.begin());
  x86[18] = 62;  // EM_X86_64
  const auto x86_path = path("x86.elf");
  std::ofstream(x86_path, std::ios::binary).write(reinterpret_cast<const char*>(x86.data()), x86.size());
  expect_bad_input({"run", x86_path}, "not RISC-V");

  // A snapshot that is garbage, or truncated.
  const auto garbage = path("garbage.snap");
  std::ofstream(garbage) << "this is not a snapshot at all";
  expect_bad_input({"run", "--restore", garbage}, "snapshot");
  const auto snap = path("good.snap");
  ASSERT_EQ(run({"run", "--max-instructions", "1000", "--save", snap, "--save-at", "1000", counter_image()}).status, 3);
  const std::string whole = slurp(snap);
  const auto cut = path("cut.snap");
  std::ofstream(cut, std::ios::binary) << whole.substr(0, whole.size() / 2);
  expect_bad_input({"run", "--restore", cut}, "truncated");
  expect_bad_input({"run", "--mem", "64", "--restore", snap}, "--mem 128");
}

TEST_F(TandemRun, CorruptOrTruncatedCheckpointIsOneLineAndStatusTwo) {
  const auto snap = path("good.ckpt");
  ASSERT_EQ(run({"run", "--max-instructions", "5000", "--save", snap, "--save-at", "5000", counter_image()}).status, 3);
  const std::string whole = slurp(snap);
  ASSERT_GT(whole.size(), 200u);
  // Flipped bytes in the header, the first record and the middle; cuts at several points.
  for (size_t at : {size_t{20}, size_t{60}, whole.size() / 2, whole.size() - 3}) {
    std::string bad = whole;
    bad[at] = static_cast<char>(bad[at] ^ 0x10);
    const auto p = path("flipped.ckpt");
    std::ofstream(p, std::ios::binary | std::ios::trunc) << bad;
    expect_bad_input({"run", "--restore", p}, "snapshot");
  }
  for (size_t keep : {size_t{0}, size_t{30}, whole.size() - 1}) {
    const auto p = path("cut.ckpt");
    std::ofstream(p, std::ios::binary | std::ios::trunc) << whole.substr(0, keep);
    expect_bad_input({"run", "--restore", p}, "truncated");
  }
  expect_bad_input({"run", "--restore", path("missing.ckpt")}, "cannot open");
}

TEST_F(TandemRun, SnapshotCarriesTheDiskToAFreshImage) {
  // A guest that writes nothing to the disk still has its contents in the snapshot: a
  // restore onto a zeroed image of the same size makes the image identical.
  const auto disk = path("src.img"), fresh = path("fresh.img"), snap = path("disk.ckpt");
  std::string content(64 * 1024, '\0');
  for (size_t i = 0; i < content.size(); i += 4096) content[i] = static_cast<char>('A' + i / 4096 % 26);
  std::ofstream(disk, std::ios::binary) << content;
  std::ofstream(fresh, std::ios::binary) << std::string(content.size(), '\0');
  const auto img = counter_image();
  const Outcome whole = run({"run", "--disk", disk, "--max-instructions", "20000", "--state-hash", img});
  ASSERT_EQ(run({"run", "--disk", disk, "--max-instructions", "10000", "--save", snap, "--save-at", "10000", img})
                .status, 3);
  const Outcome resumed =
      run({"run", "--disk", fresh, "--restore", snap, "--max-instructions", "20000", "--state-hash"});
  EXPECT_EQ(resumed.status, 3) << resumed.err;
  EXPECT_EQ(hash_of(resumed), hash_of(whole));
  EXPECT_EQ(slurp(fresh), content);
  expect_bad_input({"run", "--restore", snap}, "disk");
}

// QEMU's own OpenSBI build boots on the device tree, UART, CLINT and finisher Tandem
// describes (the fw_dynamic info comes in a2, as QEMU passes it).
TEST_F(TandemRun, OpenSbiFirmwareBootsOnTheBoard) {
  const std::string firmware = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.elf";
  if (!std::filesystem::exists(firmware)) GTEST_SKIP() << firmware << " not installed";
  const Outcome o = run({"run", "--max-instructions", "30000000", firmware});
  EXPECT_EQ(o.status, 3) << o.err;
  EXPECT_NE(o.out.find("Platform Name             : riscv-virtio,qemu"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Platform Console Device   : uart8250"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Platform Timer Device     : aclint-mtimer @ 10000000Hz"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Platform Shutdown Device  : sifive_test"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("Domain0 Next Address      : 0x0000000080200000"), std::string::npos) << o.out;
}

TEST_F(TandemRun, HelpDescribesTheRunOptions) {
  const Outcome o = run({"run", "--help"});
  EXPECT_EQ(o.status, 0);
  for (const char* opt : {"--mem", "--disk", "--max-instructions", "--stats", "--state-hash", "--save",
                          "--save-at", "--restore"}) {
    EXPECT_NE(o.out.find(opt), std::string::npos) << opt;
  }
}

}  // namespace
