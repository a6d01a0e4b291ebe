// tandem-witness as an operator runs it: a real process, its exit statuses, and kill -9 +
// restart on the same state file (epochs never granted twice, one ttl before a new holder).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "fencing/arbiter.h"
#include "tests/support/child_process.h"

namespace tandem::fencing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Outcome = Grant::Outcome;

const std::string kPsk = "fedcba9876543210fedcba9876543210";

using tandem::test::slurp;

class WitnessProcess : public ::testing::Test {
 protected:
  WitnessProcess() {
    dir = fs::temp_directory_path() / ("tw_proc_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "psk") << kPsk << "\n";
    fs::permissions(dir / "psk", fs::perms::owner_read | fs::perms::owner_write);  // a key others can read is refused
    state = (dir / "witness.state").string();
  }
  ~WitnessProcess() override {
    for (pid_t pid : running) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    fs::remove_all(dir);
  }

  pid_t spawn(const std::vector<std::string>& args) {
    // A fresh file per process: a restarted witness's "listening on" line is never the old one.
    err_path = (dir / ("witness" + std::to_string(++spawned) + ".err")).string();
    const bool help = args.size() == 1 && args[0] == "--help";  // only --help prints to stdout
    const pid_t pid = tandem::test::spawn_process(WITNESS_BIN, args, help ? err_path : "", err_path);
    running.push_back(pid);
    return pid;
  }

  // Exit status (128+signal when killed); fails the test after a generous timeout.
  int wait_exit(pid_t pid, std::chrono::seconds timeout = 30s) {
    const int status = tandem::test::wait_exit_status(pid, timeout, "tandem-witness");
    std::erase(running, pid);
    return status;
  }

  int run(const std::vector<std::string>& args) { return wait_exit(spawn(args)); }
  std::string err() const { return slurp(err_path); }

  // Starts the witness on a free port; returns "127.0.0.1:PORT" from its "listening on" line.
  std::string start() {
    spawned_at = std::chrono::steady_clock::now();  // the witness's restart wait starts later
    pid = spawn({"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file", (dir / "psk").string()});
    const std::regex listening("listening on (127\\.0\\.0\\.1:[0-9]+)");
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (std::chrono::steady_clock::now() < deadline) {
      std::smatch m;
      const std::string text = err();
      if (std::regex_search(text, m, listening)) return m[1];
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        std::erase(running, pid);
        break;
      }
      std::this_thread::sleep_for(10ms);
    }
    ADD_FAILURE() << "tandem-witness did not start: " << err();
    return "";
  }
  void kill9() {
    ::kill(pid, SIGKILL);
    EXPECT_EQ(wait_exit(pid), 128 + SIGKILL);
  }

  std::unique_ptr<Arbiter> client(const std::string& endpoint, std::chrono::milliseconds lease) const {
    ArbiterConfig c;
    c.kind = "witness";
    c.vm_id = "vm1";
    c.psk = kPsk;
    c.lease = lease;
    c.timeout = 2s;
    c.witness = endpoint;
    return make_arbiter(c);
  }

  // Asks until granted (a secondary's loop); returns the grant and how long it took.
  std::pair<Grant, std::chrono::steady_clock::duration> acquire_until_granted(Arbiter& arbiter,
                                                                              const std::string& node,
                                                                              uint64_t known) {
    const auto start_time = std::chrono::steady_clock::now();
    Grant g;
    while (!(g = arbiter.acquire(node, known)).granted() && std::chrono::steady_clock::now() - start_time < 20s) {
      EXPECT_EQ(g.outcome, Outcome::Held) << g.why;
      std::this_thread::sleep_for(20ms);
    }
    return {g, std::chrono::steady_clock::now() - start_time};
  }

  fs::path dir;
  std::string state;
  pid_t pid = -1;
  std::vector<pid_t> running;
  int spawned = 0;
  std::chrono::steady_clock::time_point spawned_at;
  std::string err_path;
};

TEST_F(WitnessProcess, EpochsStayMonotonicAcrossKill9AndRestart) {
  constexpr auto kLease = 2000ms;  // long enough that the first ask after a restart is inside it
  std::string endpoint = start();
  ASSERT_FALSE(endpoint.empty());
  const Grant first = client(endpoint, kLease)->acquire("a", 0);
  ASSERT_TRUE(first.granted()) << first.why;
  ASSERT_EQ(first.epoch, 1u);

  uint64_t newest = first.epoch;
  std::string holder = "a";
  for (int round = 0; round < 2; ++round) {
    kill9();  // right after a grant: it must already be on disk
    endpoint = start();
    ASSERT_FALSE(endpoint.empty());
    const std::string other = holder == "a" ? "b" : "a";
    auto contender = client(endpoint, kLease);
    const Grant held = contender->acquire(other, newest);
    ASSERT_EQ(held.outcome, Outcome::Held) << held.why;
    EXPECT_EQ(held.epoch, newest);
    EXPECT_NE(held.why.find("witness restarted"), std::string::npos) << held.why;
    const Grant g = acquire_until_granted(*contender, other, newest).first;
    ASSERT_TRUE(g.granted()) << g.why;
    EXPECT_GT(g.epoch, newest) << "an epoch was granted twice";
    EXPECT_GE(std::chrono::steady_clock::now() - spawned_at, kLease)
        << "a new holder was granted within one ttl of the restart";
    const Grant fenced = client(endpoint, kLease)->renew(holder, newest);
    EXPECT_EQ(fenced.outcome, Outcome::Refused);
    EXPECT_EQ(fenced.why, "fenced: epoch " + std::to_string(g.epoch) + " granted to " + other);
    newest = g.epoch;
    holder = other;
  }
  EXPECT_EQ(newest, 3u);
  ::kill(pid, SIGTERM);
  EXPECT_EQ(wait_exit(pid), 0);
  EXPECT_NE(err().find("stopping on signal"), std::string::npos) << err();
}

TEST_F(WitnessProcess, OldHolderKeepsItsEpochAcrossARestart) {
  std::string endpoint = start();
  auto a = client(endpoint, 5s);
  ASSERT_TRUE(a->acquire("a", 0).granted());
  kill9();
  endpoint = start();
  const Grant renewed = client(endpoint, 5s)->renew("a", 1);
  ASSERT_TRUE(renewed.granted()) << renewed.why;
  EXPECT_EQ(renewed.epoch, 1u);
  EXPECT_EQ(client(endpoint, 5s)->acquire("b", 1).outcome, Outcome::Held);
}

TEST_F(WitnessProcess, CorruptOrTruncatedStateFileExitsOneWithAClearError) {
  std::string endpoint = start();
  ASSERT_TRUE(client(endpoint, 2s)->acquire("a", 0).granted());
  ::kill(pid, SIGTERM);
  ASSERT_EQ(wait_exit(pid), 0);
  const std::string good = slurp(state);
  const std::vector<std::string> args{"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file",
                                      (dir / "psk").string()};

  std::ofstream(state, std::ios::binary | std::ios::trunc) << good.substr(0, good.size() / 2);
  EXPECT_EQ(run(args), 1);
  EXPECT_NE(err().find("is corrupt"), std::string::npos) << err();
  EXPECT_NE(err().find(state), std::string::npos) << err();

  std::string flipped = good;
  flipped[flipped.size() - 10] ^= 0x10;
  std::ofstream(state, std::ios::binary | std::ios::trunc) << flipped;
  EXPECT_EQ(run(args), 1);
  EXPECT_NE(err().find("checksum mismatch"), std::string::npos) << err();
  EXPECT_EQ(slurp(state), flipped) << "the corrupt file must be left for the operator";
}

TEST_F(WitnessProcess, UsageAndConfigErrorsExitTwo) {
  const std::string psk = (dir / "psk").string();
  EXPECT_EQ(run({}), 2);
  EXPECT_NE(err().find("--listen is required"), std::string::npos) << err();
  EXPECT_EQ(run({"--listen", "127.0.0.1", "--state-file", state, "--psk-file", psk}), 2);
  EXPECT_NE(err().find("expected HOST:PORT"), std::string::npos) << err();
  EXPECT_EQ(run({"--listen", "127.0.0.1:99999", "--state-file", state, "--psk-file", psk}), 2);
  EXPECT_EQ(run({"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file", (dir / "nope").string()}), 2);
  EXPECT_NE(err().find("--psk-file: cannot read"), std::string::npos) << err();
  fs::permissions(psk, fs::perms::group_read | fs::perms::others_read, fs::perm_options::add);
  EXPECT_EQ(run({"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file", psk}), 2);
  EXPECT_NE(err().find("readable by its group or others"), std::string::npos) << err();
  fs::permissions(psk, fs::perms::group_read | fs::perms::others_read, fs::perm_options::remove);
  std::ofstream(dir / "short") << "tooshort\n";
  EXPECT_EQ(run({"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file", (dir / "short").string()}), 2);
  EXPECT_NE(err().find("at least 16"), std::string::npos) << err();
  EXPECT_EQ(run({"--listen", "127.0.0.1:0", "--state-file", (dir / "no/such/dir/state").string(), "--psk-file", psk}),
            2);
  EXPECT_NE(err().find("cannot create"), std::string::npos) << err();
  EXPECT_EQ(run({"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file", psk, "--log-level", "loud"}), 2);
  EXPECT_EQ(run({"--listen", "127.0.0.1:0", "--state-file", state, "--psk-file", psk, "--bogus"}), 2);
  EXPECT_EQ(run({"--help"}), 0);
  EXPECT_NE(err().find("--state-file"), std::string::npos);
  EXPECT_FALSE(fs::exists(state)) << "a usage error must not create the state file";
}

TEST_F(WitnessProcess, ListenAddressInUseExitsTwo) {
  const std::string endpoint = start();
  const std::string port = endpoint.substr(endpoint.rfind(':') + 1);
  const pid_t first = pid;
  EXPECT_EQ(run({"--listen", "127.0.0.1:" + port, "--state-file", (dir / "other.state").string(), "--psk-file",
                 (dir / "psk").string()}),
            2);
  EXPECT_NE(err().find("cannot listen"), std::string::npos) << err();
  ::kill(first, SIGINT);
  EXPECT_EQ(wait_exit(first), 0);
}

}  // namespace
}  // namespace tandem::fencing
