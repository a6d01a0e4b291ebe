// LeaseKeeper against a real tandem-witness (in-process WitnessServer on a loopback socket):
// a holder renews and may release output; a contender is granted only after the holder's
// own output deadline; a refused renewal fences at once; release hands over without waiting.
#include "fencing/lease.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "fencing/witness/server.h"

namespace {

using namespace tandem::fencing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr const char* kPsk = "0123456789abcdef0123456789abcdef";

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (f()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return f();
}

// Forwards to a real arbiter; while `stall` is set, renewals wait first (a node whose
// arbiter traffic is stuck, e.g. behind a congested route).
class Stallable final : public Arbiter {
 public:
  explicit Stallable(std::unique_ptr<Arbiter> inner) : inner_(std::move(inner)) {}
  std::string describe() const override { return inner_->describe(); }
  Grant acquire(const std::string& node, uint64_t known) override { return inner_->acquire(node, known); }
  Grant renew(const std::string& node, uint64_t epoch) override {
    while (stall) std::this_thread::sleep_for(1ms);
    return inner_->renew(node, epoch);
  }
  Grant advance(const std::string& node, uint64_t epoch) override {
    while (stall) std::this_thread::sleep_for(1ms);
    return inner_->advance(node, epoch);
  }
  void release(const std::string& node, uint64_t epoch) override { inner_->release(node, epoch); }
  std::atomic<bool> stall{false};

 private:
  std::unique_ptr<Arbiter> inner_;
};

class LeaseTest : public ::testing::Test {
 protected:
  LeaseTest() {
    dir = fs::temp_directory_path() / ("tandem_lease_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    WitnessOptions o;
    o.state_file = (dir / "witness.state").string();
    o.psk = kPsk;
    server = std::make_unique<WitnessServer>(o);
    thread = std::thread([this] { server->run(); });
  }
  ~LeaseTest() override {
    server->stop();
    thread.join();
    fs::remove_all(dir);
  }
  ArbiterConfig config(std::chrono::milliseconds lease = 1200ms) const {
    ArbiterConfig c;
    c.kind = "witness";
    c.vm_id = "kv";
    c.psk = kPsk;
    c.lease = lease;
    c.timeout = 100ms;
    c.witness = server->endpoint();
    return c;
  }

  fs::path dir;
  std::unique_ptr<WitnessServer> server;
  std::thread thread;
};

TEST(LeaseDeadline, IsTheSendTimePlusNinetyFivePercentOfTheTtlMinusTwoTimeouts) {
  const auto sent = Clock::now();
  EXPECT_EQ(LeaseKeeper::output_deadline(sent, 2000ms, 500ms), sent + 900ms);
  EXPECT_EQ(LeaseKeeper::output_deadline(sent, 600ms, 100ms), sent + 370ms);
}

TEST_F(LeaseTest, HolderRenewsAndTheContenderGetsTheLeaseOnlyAfterTheHolderFellSilent) {
  LeaseKeeper a(config(), "a"), b(config(), "b");
  EXPECT_EQ(a.renew_interval(), 400ms);  // lease/3
  a.start();
  b.start();
  EXPECT_FALSE(a.may_release_output());
  EXPECT_EQ(a.lease_ms_left(), -1);
  std::atomic<uint64_t> a_epoch{0};
  a.acquire(0, [&](const Grant& g) { a_epoch = g.epoch; });
  // The keeper may release output a moment before it calls the grant callback (another
  // thread): wait for both, then check they agree.
  ASSERT_TRUE(eventually([&] { return a.may_release_output() && a_epoch.load() > 0; }));
  EXPECT_EQ(a.epoch(), a_epoch.load());
  EXPECT_GT(a.lease_ms_left(), 0);
  EXPECT_LE(a.lease_ms_left(), 940);  // 1200 * 0.95 - 2 * 100

  // b tries while a renews: held, for well over a lease.
  std::atomic<int64_t> b_granted_ns{0};
  std::atomic<uint64_t> b_epoch{0};
  b.acquire(a_epoch, [&](const Grant& g) {
    b_epoch = g.epoch;
    b_granted_ns = Clock::now().time_since_epoch().count();
  });
  std::this_thread::sleep_for(1500ms);
  EXPECT_TRUE(b.acquiring());
  EXPECT_TRUE(a.may_release_output());
  EXPECT_NE(b.last_outcome().find("held"), std::string::npos) << b.last_outcome();

  // a stops renewing (its node froze): its output stops before b is granted.
  a.cancel();
  EXPECT_FALSE(a.may_release_output());  // cancel stops at once
  ASSERT_TRUE(eventually([&] { return b_epoch.load() != 0; }, 5s));
  EXPECT_GT(b_epoch.load(), a_epoch.load());
  EXPECT_TRUE(b.may_release_output());
}

TEST_F(LeaseTest, OutputStopsAtTheLocalDeadlineBeforeTheArbiterGrantsAnyoneElse_AndARefusedRenewalFences) {
  auto stallable = std::make_unique<Stallable>(make_arbiter(config()));
  Stallable& arbiter = *stallable;
  LeaseKeeper a(std::move(stallable), config(), "a");
  LeaseKeeper b(config(), "b");
  std::atomic<int> fenced_calls{0};
  a.on_fenced = [&](const std::string&) { ++fenced_calls; };
  a.start();
  b.start();
  a.acquire(0);
  ASSERT_TRUE(eventually([&] { return a.may_release_output(); }));
  // a's renewals stall. The invariant: at no moment after b was granted may a release
  // output. Sample a's gate at explicit times until well after b's grant.
  arbiter.stall = true;
  std::atomic<int64_t> b_granted_ns{0};
  b.acquire(a.epoch(), [&](const Grant&) { b_granted_ns = Clock::now().time_since_epoch().count(); });
  int64_t a_last_open_ns = 0;
  const auto give_up = Clock::now() + 5s;
  while (Clock::now() < give_up) {
    const auto t = Clock::now();
    if (a.may_release_output(t)) a_last_open_ns = t.time_since_epoch().count();
    const int64_t granted = b_granted_ns.load();
    if (granted != 0 && t.time_since_epoch().count() > granted + 200'000'000) break;
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_NE(b_granted_ns.load(), 0) << "b was never granted";
  ASSERT_NE(a_last_open_ns, 0);
  EXPECT_LT(a_last_open_ns, b_granted_ns.load()) << "a could release output after b was granted";
  EXPECT_FALSE(a.fenced());  // past its deadline, but nobody refused it yet
  EXPECT_EQ(a.lease_ms_left(), 0);
  // a's stuck renewal finally reaches the witness: refused, fenced for good.
  arbiter.stall = false;
  ASSERT_TRUE(eventually([&] { return a.fenced(); }, 3s));
  // on_fenced runs on the keeper's thread just after fenced() turns true: wait for it.
  EXPECT_TRUE(eventually([&] { return fenced_calls.load() >= 1; }, 3s));
  EXPECT_FALSE(a.may_release_output());
  EXPECT_EQ(a.lease_ms_left(), -1);
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(a.may_release_output());  // and stays so
  EXPECT_EQ(fenced_calls.load(), 1);     // told once
}

TEST_F(LeaseTest, ReleaseLetsThePeerAcquireAtOnce) {
  LeaseKeeper a(config(5000ms), "a"), b(config(5000ms), "b");
  a.start();
  b.start();
  a.acquire(0);
  ASSERT_TRUE(eventually([&] { return a.may_release_output(); }));
  const uint64_t old_epoch = a.epoch();
  a.release();
  EXPECT_FALSE(a.may_release_output());
  const auto start = Clock::now();
  b.acquire(old_epoch);
  ASSERT_TRUE(eventually([&] { return b.may_release_output(); }, 3s));
  EXPECT_LT(Clock::now() - start, 2000ms);  // far less than the 5 s lease
  EXPECT_GT(b.epoch(), old_epoch);
}

TEST_F(LeaseTest, YieldStopsOutputAndReportsFenced) {
  LeaseKeeper a(config(), "a");
  std::string why;
  a.on_fenced = [&](const std::string& w) { why = w; };
  a.start();
  a.acquire(0);
  ASSERT_TRUE(eventually([&] { return a.may_release_output(); }));
  a.yield("lost the secondary on every path");
  EXPECT_TRUE(a.fenced());
  EXPECT_FALSE(a.may_release_output());
  EXPECT_EQ(why, "lost the secondary on every path");
  EXPECT_NE(a.last_outcome().find("yielded"), std::string::npos);
}

// Issue 7: the holder drops a silent secondary by advancing the epoch; the secondary, still
// at the old epoch, is refused (never granted, even once the holder stopped renewing) and is
// told so once instead of retrying forever.
TEST_F(LeaseTest, AdvanceMovesTheHolderOnAndTheStaleContenderIsRefused) {
  LeaseKeeper a(config(600ms), "a"), b(config(600ms), "b");
  a.start();
  b.start();
  a.acquire(0);
  ASSERT_TRUE(eventually([&] { return a.may_release_output(); }));
  const uint64_t old_epoch = a.epoch();
  std::atomic<uint64_t> advanced{0};
  a.advance([&](const Grant& g) { advanced = g.epoch; });
  ASSERT_TRUE(eventually([&] { return advanced.load() != 0; })) << a.last_outcome();
  EXPECT_EQ(advanced.load(), old_epoch + 1);
  EXPECT_EQ(a.epoch(), old_epoch + 1);
  EXPECT_TRUE(a.may_release_output());
  // It renews under the new epoch from then on.
  std::this_thread::sleep_for(700ms);
  EXPECT_TRUE(a.may_release_output()) << a.last_outcome();

  std::atomic<bool> granted{false};
  std::string refusal;
  std::mutex m;
  a.cancel();  // the holder goes quiet: its lease lapses, and still the stale replica gets nothing
  b.acquire(old_epoch, [&](const Grant&) { granted = true; }, [&](const Grant& g) {
    std::lock_guard lock(m);
    refusal = g.why;
  });
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(m);
    return !refusal.empty();
  }));
  EXPECT_NE(refusal.find("stale replica"), std::string::npos) << refusal;
  EXPECT_FALSE(b.acquiring()) << "a refusal ends the acquiring";
  std::this_thread::sleep_for(800ms);
  EXPECT_FALSE(granted.load());
  EXPECT_FALSE(b.may_release_output());
}

TEST_F(LeaseTest, AnAdvanceAfterAnotherNodeTookTheLeaseFences) {
  auto stallable = std::make_unique<Stallable>(make_arbiter(config(600ms)));
  Stallable& arbiter = *stallable;
  LeaseKeeper a(std::move(stallable), config(600ms), "a");
  LeaseKeeper b(config(600ms), "b");
  std::atomic<bool> fenced{false};
  a.on_fenced = [&](const std::string&) { fenced = true; };
  a.start();
  b.start();
  a.acquire(0);
  ASSERT_TRUE(eventually([&] { return a.may_release_output(); }));
  const uint64_t old_epoch = a.epoch();
  arbiter.stall = true;  // a's arbiter traffic is stuck: its lease lapses and b takes over
  std::atomic<uint64_t> b_epoch{0};
  b.acquire(old_epoch, [&](const Grant& g) { b_epoch = g.epoch; });
  ASSERT_TRUE(eventually([&] { return b_epoch.load() != 0; }));
  EXPECT_FALSE(a.may_release_output());
  std::atomic<bool> advanced{false};
  a.advance([&](const Grant&) { advanced = true; });
  arbiter.stall = false;
  ASSERT_TRUE(eventually([&] { return fenced.load(); }));
  EXPECT_FALSE(advanced.load());
  EXPECT_TRUE(a.fenced());
  EXPECT_FALSE(a.may_release_output());
}

TEST(LeaseUnreachable, AnUnreachableArbiterNeverGrantsAndIsReported) {
  ArbiterConfig c;
  c.kind = "witness";
  c.vm_id = "kv";
  c.psk = kPsk;
  c.lease = 400ms;
  c.timeout = 50ms;
  c.witness = "127.0.0.1:1";  // nothing listens
  LeaseKeeper a(c, "a");
  a.start();
  a.acquire(0);
  ASSERT_TRUE(eventually([&] { return !a.last_outcome().empty(); }));
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(a.acquiring());
  EXPECT_FALSE(a.may_release_output());
  EXPECT_NE(a.last_outcome().find("unreachable"), std::string::npos) << a.last_outcome();
}

TEST(LeaseNone, TheNoneArbiterGrantsAtOnceAndNeverLapses) {
  ArbiterConfig c;
  LeaseKeeper a(c, "a");
  a.start();
  a.acquire(3);
  ASSERT_TRUE(eventually([&] { return a.may_release_output(); }));
  EXPECT_EQ(a.epoch(), 4u);
  EXPECT_TRUE(a.may_release_output(Clock::now() + 1h));
}

}  // namespace
