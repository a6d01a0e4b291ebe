// The disk arbiter on a real file: two arbiters (threads and processes) contending for one
// lease record, takeover only after a ttl without renewals, and records it must not trust.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "fencing/arbiter.h"
#include "fencing/arbiters/disk_arbiter.h"
#include "fencing/arbiters/disk_record.h"

namespace tandem::fencing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Outcome = Grant::Outcome;
using Clock = std::chrono::steady_clock;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class Disk : public ::testing::Test {
 protected:
  Disk() {
    dir = fs::temp_directory_path() / ("td_disk_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
    lease_file = (dir / "vm1.lease").string();
    disk::init_lease_file(lease_file, "vm1");  // what `tandemctl init-lease` does
  }
  ~Disk() override { fs::remove_all(dir); }

  std::unique_ptr<Arbiter> arbiter(std::chrono::milliseconds lease = 400ms, const std::string& vm = "vm1") const {
    ArbiterConfig c;
    c.kind = "disk";
    c.vm_id = vm;
    c.disk_path = lease_file;
    c.lease = lease;
    c.timeout = 500ms;
    return make_arbiter(c);
  }

  // The contender's loop: acquire until granted; returns the grant.
  static Grant acquire_until_granted(Arbiter& a, const std::string& node, uint64_t known,
                                     std::chrono::seconds limit = 20s) {
    const auto start = Clock::now();
    Grant g;
    while (!(g = a.acquire(node, known)).granted() && Clock::now() - start < limit) {
      EXPECT_EQ(g.outcome, Outcome::Held) << g.why;
      std::this_thread::sleep_for(20ms);
    }
    return g;
  }

  // The record as the file holds it now.
  disk::Record on_disk() const {
    const std::string bytes = slurp(lease_file);
    disk::Block b{};
    if (bytes.size() != b.size()) return {};
    std::copy(bytes.begin(), bytes.end(), b.begin());
    const auto decoded = disk::decode(b);
    return std::holds_alternative<disk::Record>(decoded) ? std::get<disk::Record>(decoded) : disk::Record{};
  }

  fs::path dir;
  std::string lease_file;
};

TEST_F(Disk, GrantRenewReleaseAndFence) {
  auto a = arbiter(), b = arbiter();
  const Grant g = acquire_until_granted(*a, "a", 0);
  ASSERT_TRUE(g.granted()) << g.why;
  EXPECT_EQ(g.epoch, 1u);
  EXPECT_EQ(g.ttl, 400ms);
  EXPECT_EQ(fs::file_size(lease_file), DiskArbiter::kRecordBytes);
  const Grant held = b->acquire("b", 1);
  EXPECT_EQ(held.outcome, Outcome::Held);
  EXPECT_EQ(held.holder, "a");
  EXPECT_TRUE(a->renew("a", 1).granted());
  a->release("a", 1);
  const Grant taken = b->acquire("b", 1);  // released: no wait
  ASSERT_TRUE(taken.granted()) << taken.why;
  EXPECT_EQ(taken.epoch, 2u);
  const Grant fenced = a->renew("a", 1);
  EXPECT_EQ(fenced.outcome, Outcome::Refused);
  EXPECT_EQ(fenced.why, "fenced: epoch 2 granted to b");
}

// Issue 7: the holder's epoch CAS under the record lock, kept in the record (a reopened
// file, another arbiter object) and refusing the stale replica even after the lease lapsed.
TEST_F(Disk, AdvanceByTheHolderIsPersistedAndRefusesOlderReplicas) {
  auto a = arbiter(300ms), b = arbiter(300ms);
  ASSERT_EQ(acquire_until_granted(*a, "a", 0).epoch, 1u);
  EXPECT_EQ(b->advance("b", 1).outcome, Outcome::Refused) << "b does not hold epoch 1";
  EXPECT_EQ(a->advance("a", 2).outcome, Outcome::Refused) << "epoch 2 was never granted";
  const Grant advanced = a->advance("a", 1);
  ASSERT_TRUE(advanced.granted()) << advanced.why;
  EXPECT_EQ(advanced.epoch, 2u);
  EXPECT_EQ(advanced.ttl, 300ms);
  const Grant repeated = a->advance("a", 1);  // a retry after a lost answer: the same advance
  ASSERT_TRUE(repeated.granted()) << repeated.why;
  EXPECT_EQ(repeated.epoch, 2u);
  EXPECT_EQ(a->advance("a", 0).outcome, Outcome::Refused) << "the compare must fail on an old epoch";
  EXPECT_TRUE(a->renew("a", 2).granted());
  const std::string record = slurp(lease_file);
  ASSERT_EQ(record.size(), DiskArbiter::kRecordBytes);
  EXPECT_EQ(record[8], 2) << "a record with a floor is version 2 (older tandemds refuse it)";

  auto reopened = arbiter(300ms);  // a fresh arbiter: everything it knows comes from the file
  const Grant stale = reopened->acquire("b", 1);
  EXPECT_EQ(stale.outcome, Outcome::Refused) << stale.why;
  EXPECT_NE(stale.why.find("stale replica"), std::string::npos) << stale.why;
  // Long after a's lease lapsed, the stale replica is still refused; a current one takes over.
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(reopened->acquire("b", 1).outcome, Outcome::Refused);
  const Grant current = acquire_until_granted(*reopened, "b", 2);
  ASSERT_TRUE(current.granted()) << current.why;
  EXPECT_EQ(current.epoch, 3u);
  EXPECT_EQ(a->advance("a", 2).outcome, Outcome::Refused) << "fenced: epoch 3 belongs to b";
}

TEST_F(Disk, RenewalsKeepAContenderOutAndItTakesOverOneTtlAfterTheLast) {
  constexpr auto kTtl = 800ms;
  auto a = arbiter(kTtl), b = arbiter(kTtl);
  ASSERT_TRUE(acquire_until_granted(*a, "a", 0).granted());
  std::atomic<bool> renewing{true};
  std::atomic<Clock::rep> last_renewal{Clock::now().time_since_epoch().count()};
  std::thread holder([&] {
    while (renewing) {
      const Grant g = a->renew("a", 1);
      if (g.granted()) last_renewal = Clock::now().time_since_epoch().count();
      std::this_thread::sleep_for(kTtl / 4);
    }
  });
  // Three ttls of renewals: the contender never gets it.
  const auto watch_until = Clock::now() + 3 * kTtl;
  while (Clock::now() < watch_until) {
    const Grant g = b->acquire("b", 1);
    ASSERT_EQ(g.outcome, Outcome::Held) << g.why;
    std::this_thread::sleep_for(20ms);
  }
  renewing = false;
  holder.join();
  const Clock::time_point stopped{Clock::duration(last_renewal.load())};
  const Grant g = acquire_until_granted(*b, "b", 1);
  ASSERT_TRUE(g.granted()) << g.why;
  EXPECT_GE(Clock::now() - stopped, kTtl);
  EXPECT_EQ(g.epoch, 2u);
  EXPECT_EQ(a->renew("a", 1).outcome, Outcome::Refused);
}

TEST_F(Disk, HolderProcessKilledIsTakenOverAfterTtl) {
  constexpr auto kTtl = 1000ms;
  const pid_t child = ::fork();
  if (child == 0) {  // the holder: acquire, then renew until killed
    ArbiterConfig c;
    c.kind = "disk";
    c.vm_id = "vm1";
    c.disk_path = lease_file;
    c.lease = kTtl;
    auto a = make_arbiter(c);
    if (!acquire_until_granted(*a, "a", 0).granted()) ::_exit(3);
    for (;;) {
      a->renew("a", 1);
      std::this_thread::sleep_for(kTtl / 5);
    }
  }
  struct Reaper {  // the child never outlives the test, even when an assertion fails
    pid_t pid;
    ~Reaper() {
      if (pid > 0 && ::kill(pid, SIGKILL) == 0) ::waitpid(pid, nullptr, 0);
    }
  } reaper{child};
  // Ask only once the child holds the lease (an earlier ask would contend for the fresh record).
  const auto start = Clock::now();
  while (on_disk().holder != "a" && Clock::now() - start < 20s) std::this_thread::sleep_for(10ms);
  auto b = arbiter(kTtl);
  const Grant g = b->acquire("b", 0);
  ASSERT_EQ(g.outcome, Outcome::Held) << g.why;
  ASSERT_EQ(g.holder, "a") << g.why;
  for (int i = 0; i < 10; ++i) {
    std::this_thread::sleep_for(100ms);
    ASSERT_EQ(b->acquire("b", 1).outcome, Outcome::Held);
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  reaper.pid = -1;
  const auto killed = Clock::now();
  const Grant taken = acquire_until_granted(*b, "b", 1);
  ASSERT_TRUE(taken.granted()) << taken.why;
  EXPECT_EQ(taken.epoch, 2u);
  // Counted from the contender's first sight of the last renewal, which was at most one renew
  // period (kTtl / 5) before the kill: half a ttl leaves room for a loaded machine.
  EXPECT_GE(Clock::now() - killed, kTtl / 2);
}

TEST_F(Disk, CorruptOrForeignRecordIsRefusedAndLeftAlone) {
  {
    auto a = arbiter();
    ASSERT_TRUE(acquire_until_granted(*a, "a", 0).granted());
  }
  const std::string good = slurp(lease_file);
  ASSERT_EQ(good.size(), DiskArbiter::kRecordBytes);
  const auto expect_refused = [&](const std::string& bytes, const std::string& why) {
    std::ofstream(lease_file, std::ios::binary | std::ios::trunc) << bytes;
    auto b = arbiter();
    for (const Grant& g : {b->acquire("b", 5), b->renew("a", 1)}) {
      EXPECT_EQ(g.outcome, Outcome::Refused) << why;
      EXPECT_NE(g.why.find(why), std::string::npos) << g.why;
    }
    b->release("a", 1);
    EXPECT_EQ(slurp(lease_file), bytes) << "a bad record must never be overwritten";
  };
  std::string flipped = good;
  flipped[20] ^= 0x01;  // the epoch
  expect_refused(flipped, "checksum mismatch");
  expect_refused(good.substr(0, 100), "truncated");
  expect_refused(std::string(DiskArbiter::kRecordBytes, 'z'), "bad magic");
  std::ofstream(lease_file, std::ios::binary | std::ios::trunc) << good;
  const Grant foreign = arbiter(400ms, "vm2")->acquire("b", 0);
  EXPECT_EQ(foreign.outcome, Outcome::Refused);
  EXPECT_NE(foreign.why.find("belongs to vm vm1"), std::string::npos) << foreign.why;
  EXPECT_EQ(slurp(lease_file), good);
}

TEST_F(Disk, LockedFileIsUnreachableWithinTheTimeout) {
  ASSERT_TRUE(acquire_until_granted(*arbiter(), "a", 0).granted());
  const int fd = ::open(lease_file.c_str(), O_RDWR);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  ASSERT_EQ(::fcntl(fd, F_OFD_SETLK, &lock), 0);
  const auto before = Clock::now();
  const Grant g = arbiter()->renew("a", 1);
  EXPECT_EQ(g.outcome, Outcome::Unreachable);
  EXPECT_NE(g.why.find("stayed locked"), std::string::npos) << g.why;
  EXPECT_GE(Clock::now() - before, 500ms);
  EXPECT_LT(Clock::now() - before, 5s);
  ::close(fd);
  EXPECT_TRUE(arbiter()->renew("a", 1).granted());
}

TEST_F(Disk, ManyThreadsNeverShareAnEpoch) {
  // Contenders hammering acquire on a free-then-released lease: each epoch goes to one node.
  {
    auto first = arbiter();
    const Grant g = acquire_until_granted(*first, "n0", 0);
    ASSERT_TRUE(g.granted()) << g.why;
    first->release("n0", g.epoch);
  }
  constexpr int kThreads = 4;
  std::vector<std::vector<uint64_t>> won(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto a = arbiter(5s);
      const std::string node = "n" + std::to_string(t);
      for (int i = 0; i < 25; ++i) {
        const Grant g = a->acquire(node, 0);
        if (g.granted()) {
          won[t].push_back(g.epoch);
          a->release(node, g.epoch);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<uint64_t> epochs;
  size_t total = 0;
  for (const auto& w : won) {
    total += w.size();
    epochs.insert(w.begin(), w.end());
  }
  EXPECT_GT(total, 0u);
  EXPECT_EQ(epochs.size(), total) << "an epoch was granted twice";
}

// Finding 6 of issue 20: the daemon never creates the lease file. A missing file (the shared
// filesystem not mounted, the file deleted) is Refused with the fix named; the old code created
// it and granted each host a lease of its own.
TEST_F(Disk, AMissingFileIsRefusedAndNeverCreated) {
  fs::remove(lease_file);
  for (const Grant& g : {arbiter()->acquire("a", 0), arbiter()->renew("a", 1), arbiter()->advance("a", 1)}) {
    EXPECT_EQ(g.outcome, Outcome::Refused) << g.why;
    EXPECT_NE(g.why.find("does not exist"), std::string::npos) << g.why;
    EXPECT_NE(g.why.find("tandemctl init-lease"), std::string::npos) << g.why;
  }
  EXPECT_FALSE(fs::exists(lease_file)) << "the arbiter created the lease file";
  std::ofstream(lease_file, std::ios::trunc).flush();  // touched, never initialised
  const Grant empty = arbiter()->acquire("a", 0);
  EXPECT_EQ(empty.outcome, Outcome::Refused) << empty.why;
  EXPECT_NE(empty.why.find("empty"), std::string::npos) << empty.why;
  EXPECT_EQ(fs::file_size(lease_file), 0u);
}

// A fresh record is granted only after one ttl of the contender's clock without a change (the
// old code granted it at once): a file re-created under a holder still running on the old one
// must not hand out a second lease before that holder has stopped.
TEST_F(Disk, AFreshRecordIsGrantedOnlyAfterOneTtl) {
  constexpr auto kTtl = 600ms;
  auto a = arbiter(kTtl);
  const auto first_sight = Clock::now();
  const Grant waiting = a->acquire("a", 0);
  ASSERT_EQ(waiting.outcome, Outcome::Held) << waiting.why;
  EXPECT_NE(waiting.why.find("fresh lease record"), std::string::npos) << waiting.why;
  const Grant g = acquire_until_granted(*a, "a", 0);
  ASSERT_TRUE(g.granted()) << g.why;
  EXPECT_GE(Clock::now() - first_sight, kTtl);
  EXPECT_EQ(g.epoch, 1u);

  // The file is deleted and initialised again while a holds epoch 1: a's renewals are refused
  // (it self-fences within its ttl) and b waits a full ttl for the fresh record.
  fs::remove(lease_file);
  disk::init_lease_file(lease_file, "vm1");
  const Grant renewal = a->renew("a", 1);
  EXPECT_EQ(renewal.outcome, Outcome::Refused) << renewal.why;
  auto b = arbiter(kTtl);
  const auto b_first_sight = Clock::now();
  EXPECT_EQ(b->acquire("b", 0).outcome, Outcome::Held);
  const Grant taken = acquire_until_granted(*b, "b", 0);
  ASSERT_TRUE(taken.granted()) << taken.why;
  EXPECT_GE(Clock::now() - b_first_sight, kTtl);
}

TEST_F(Disk, InitNeverOverwritesALeaseFile) {
  const std::string before = slurp(lease_file);
  ASSERT_EQ(before.size(), DiskArbiter::kRecordBytes);
  try {
    disk::init_lease_file(lease_file, "vm1");
    ADD_FAILURE() << "init-lease replaced an existing lease file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("File exists"), std::string::npos) << e.what();
  }
  EXPECT_EQ(slurp(lease_file), before);
  EXPECT_FALSE(fs::exists(lease_file + ".tmp"));
  EXPECT_THROW(disk::init_lease_file((dir / "other.lease").string(), ""), std::invalid_argument);
  const disk::Record fresh = on_disk();
  EXPECT_EQ(fresh.vm_id, "vm1");
  EXPECT_EQ(fresh.epoch, 0u);
  EXPECT_EQ(fresh.holder, "");
}

TEST(DiskSettings, MissingPathOrVmIdIsRejected) {
  ArbiterConfig c;
  c.kind = "disk";
  c.vm_id = "vm1";
  EXPECT_THROW(make_arbiter(c), std::invalid_argument);
  c.disk_path = "/tmp/x.lease";
  c.vm_id.clear();
  EXPECT_THROW(make_arbiter(c), std::invalid_argument);
  c.vm_id = "vm1";
  EXPECT_EQ(make_arbiter(c)->describe(), "disk /tmp/x.lease");
}

}  // namespace
}  // namespace tandem::fencing
