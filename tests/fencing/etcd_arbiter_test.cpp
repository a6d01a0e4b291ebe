// EtcdArbiter against a real single-node etcd (started here on 127.0.0.1 with free ports and
// a temporary data dir, killed with SIGKILL at the end), plus a hostile fake HTTP server on a
// real socket for the replies etcd never sends.
#include "fencing/arbiters/etcd_arbiter.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace tandem::fencing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Outcome = Grant::Outcome;

// ---- plain sockets for the test's own plumbing -------------------------------------------

uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind");
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

int connect_loopback(uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// One HTTP/1.0 exchange (the server closes after it); "" when nothing answers.
std::string http_exchange(uint16_t port, const std::string& method, const std::string& path, const std::string& body) {
  const int fd = connect_loopback(port);
  if (fd < 0) return "";
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const std::string request = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
                              "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
    ::close(fd);
    return "";
  }
  std::string reply;
  char chunk[4096];
  ssize_t n;
  while ((n = ::recv(fd, chunk, sizeof chunk, 0)) > 0) reply.append(chunk, size_t(n));
  ::close(fd);
  const size_t body_at = reply.find("\r\n\r\n");
  return body_at == std::string::npos ? "" : reply.substr(body_at + 4);
}

std::string find_etcd() {
  if (const char* env = std::getenv("TANDEM_ETCD")) return env;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && ::access((dir + "/etcd").c_str(), X_OK) == 0) return dir + "/etcd";
  for (const char* candidate : {"/usr/bin/etcd", "/usr/local/bin/etcd"})
    if (::access(candidate, X_OK) == 0) return candidate;
  return "";
}

// ---- a real etcd -------------------------------------------------------------------------

class EtcdProcess {
 public:
  explicit EtcdProcess(std::string binary)
      : binary_(std::move(binary)), client_port_(free_port()), peer_port_(free_port()) {
    char pattern[] = "/tmp/tandem-etcd-test-XXXXXX";
    if (!::mkdtemp(pattern)) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
  }
  ~EtcdProcess() {
    kill9();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_port_); }
  uint16_t client_port() const { return client_port_; }

  // Starts etcd (again, on the same data dir and ports) and waits until it is healthy.
  void start() {
    const std::string client = url();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    std::vector<std::string> args = {binary_,
                                     "--name=tandem-test",
                                     "--data-dir=" + dir_ + "/data",
                                     "--listen-client-urls=" + client,
                                     "--advertise-client-urls=" + client,
                                     "--listen-peer-urls=" + peer,
                                     "--initial-advertise-peer-urls=" + peer,
                                     "--initial-cluster=tandem-test=" + peer,
                                     "--log-level=warn",
                                     "--logger=zap"};
    const std::string log = dir_ + "/etcd.log";
    pid_ = ::fork();
    if (pid_ < 0) throw std::runtime_error("fork failed");
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed or timed-out test
      const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (out >= 0) {
        ::dup2(out, 1);
        ::dup2(out, 2);
      }
      std::vector<char*> argv;
      for (auto& arg : args) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    const auto deadline = Clock::now() + 30s;
    while (Clock::now() < deadline) {
      if (http_exchange(client_port_, "GET", "/health", "").find("\"health\":\"true\"") != std::string::npos) return;
      int status;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("etcd exited at start; its log:\n" + log_text());
      }
      std::this_thread::sleep_for(100ms);
    }
    throw std::runtime_error("etcd not healthy within 30 s; its log:\n" + log_text());
  }

  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

  std::string log_text() const {
    std::ifstream in(dir_ + "/etcd.log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  std::string binary_;
  uint16_t client_port_;
  uint16_t peer_port_;
  std::string dir_;
  pid_t pid_ = -1;
};

ArbiterConfig config_for(const std::string& url, const std::string& vm_id, std::chrono::milliseconds lease = 3000ms) {
  ArbiterConfig config;
  config.kind = "etcd";
  config.vm_id = vm_id;
  config.etcd = url;
  config.lease = lease;
  config.timeout = 2000ms;  // generous: a slow shared CI machine must not fail these
  return config;
}

// The leader record as etcd holds it (read with a plain HTTP request, not the arbiter).
nlohmann::json leader_kv(uint16_t port, const std::string& vm_id) {
  const nlohmann::json request = {{"key", base64_encode(etcd_leader_key(vm_id))}};
  const auto reply = nlohmann::json::parse(http_exchange(port, "POST", "/v3/kv/range", request.dump()), nullptr, false);
  if (!reply.is_object() || !reply.contains("kvs")) return nullptr;
  return reply["kvs"][0];
}

class EtcdArbiterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    binary_ = find_etcd();
    if (binary_.empty()) return;
    etcd_ = new EtcdProcess(binary_);
    etcd_->start();
  }
  static void TearDownTestSuite() {
    delete etcd_;
    etcd_ = nullptr;
  }
  void SetUp() override {
    if (binary_.empty())
      GTEST_SKIP() << "no etcd binary in PATH (Debian: apt-get install etcd-server, or set TANDEM_ETCD)";
    // One VM id per test: the tests share the etcd but never a key.
    vm_ = std::string("vm-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }

  std::unique_ptr<Arbiter> arbiter(std::chrono::milliseconds lease = 3000ms) {
    return make_arbiter(config_for(etcd_->url(), vm_, lease));
  }

  static inline std::string binary_;
  static inline EtcdProcess* etcd_ = nullptr;
  std::string vm_;
};

TEST_F(EtcdArbiterTest, AcquireWinsTheKeyUnderItsRevision) {
  auto a = arbiter(2500ms);
  EXPECT_NE(a->describe().find("/tandem/" + vm_ + "/leader"), std::string::npos) << a->describe();
  const Grant grant = a->acquire("a", 0);
  ASSERT_EQ(grant.outcome, Outcome::Granted) << grant.why;
  EXPECT_GT(grant.epoch, 0u);
  EXPECT_EQ(grant.ttl, 3000ms) << "2500 ms rounds up to 3 s (etcd's unit)";
  EXPECT_EQ(grant.holder, "a");

  const auto kv = leader_kv(etcd_->client_port(), vm_);
  ASSERT_TRUE(kv.is_object());
  EXPECT_EQ(kv["create_revision"].get<std::string>(), std::to_string(grant.epoch));
  EXPECT_NE(kv.value("lease", "0"), "0") << "the key must be attached to the lease";
  const auto record = nlohmann::json::parse(*base64_decode(kv["value"].get<std::string>()));
  EXPECT_EQ(record["node"], "a");
  EXPECT_EQ(record["epoch"], grant.epoch);
}

TEST_F(EtcdArbiterTest, SecondNodeIsHeldWithTheHolder) {
  auto a = arbiter();
  auto b = arbiter();
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  const Grant held = b->acquire("b", won.epoch);
  EXPECT_EQ(held.outcome, Outcome::Held) << held.why;
  EXPECT_EQ(held.holder, "a");
  EXPECT_EQ(held.epoch, won.epoch);
  EXPECT_NE(held.why.find("held by a"), std::string::npos) << held.why;
}

TEST_F(EtcdArbiterTest, AcquireByTheHolderIsARenewalEvenFromANewProcess) {
  auto a = arbiter();
  const Grant first = a->acquire("a", 0);
  ASSERT_TRUE(first.granted()) << first.why;
  const Grant again = a->acquire("a", first.epoch);
  ASSERT_TRUE(again.granted()) << again.why;
  EXPECT_EQ(again.epoch, first.epoch);
  // A restarted tandemd (a new arbiter object) finds its own lease on the key.
  auto restarted = arbiter();
  const Grant adopted = restarted->acquire("a", first.epoch);
  ASSERT_TRUE(adopted.granted()) << adopted.why;
  EXPECT_EQ(adopted.epoch, first.epoch);
  EXPECT_NE(adopted.why.find("renewed"), std::string::npos) << adopted.why;
  const Grant renewed = restarted->renew("a", first.epoch);
  EXPECT_TRUE(renewed.granted()) << renewed.why;
}

TEST_F(EtcdArbiterTest, RenewKeepsTheLeaseAndRefusesOthers) {
  auto a = arbiter();
  auto b = arbiter();
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  for (int i = 0; i < 3; ++i) {
    const Grant renewed = a->renew("a", won.epoch);
    ASSERT_TRUE(renewed.granted()) << renewed.why;
    EXPECT_EQ(renewed.epoch, won.epoch);
    EXPECT_EQ(renewed.ttl, 3000ms);
  }
  const Grant wrong_epoch = a->renew("a", won.epoch + 1);
  EXPECT_EQ(wrong_epoch.outcome, Outcome::Refused) << wrong_epoch.why;
  const Grant not_holder = b->renew("b", won.epoch);
  EXPECT_EQ(not_holder.outcome, Outcome::Refused) << not_holder.why;
  EXPECT_EQ(not_holder.holder, "a");
  // Neither refusal touched the holder's lease.
  EXPECT_TRUE(a->renew("a", won.epoch).granted());
}

TEST_F(EtcdArbiterTest, LeaseExpiryHandsOverWithAHigherEpochAndFencesTheOldHolder) {
  auto a = arbiter(1000ms);
  auto b = arbiter(1000ms);
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  const auto a_granted_at = Clock::now();
  // etcd's minimum TTL (1.5 election timeouts) may lengthen the 1 s asked for: the Grant says.
  EXPECT_GE(won.ttl, 1000ms);

  // The secondary retries as tandemd does (every ~lease/4) until the lease lapses.
  Grant taken;
  const auto give_up = Clock::now() + won.ttl + 15s;
  while (Clock::now() < give_up) {
    taken = b->acquire("b", won.epoch);
    if (taken.outcome != Outcome::Held) break;
    std::this_thread::sleep_for(250ms);
  }
  const auto handed_over_after = Clock::now() - a_granted_at;
  ASSERT_EQ(taken.outcome, Outcome::Granted) << taken.why;
  EXPECT_GT(taken.epoch, won.epoch);
  // Never before the old lease's ttl ran out (etcd counts from its receipt, earlier than this).
  EXPECT_GE(handed_over_after, won.ttl) << "handed over after "
                                        << std::chrono::duration_cast<std::chrono::milliseconds>(handed_over_after).count()
                                        << " ms";

  const Grant stale = a->renew("a", won.epoch);
  EXPECT_EQ(stale.outcome, Outcome::Refused) << stale.why;
  EXPECT_NE(stale.why.find("fenced"), std::string::npos) << stale.why;
  EXPECT_EQ(stale.holder, "b");
  EXPECT_EQ(stale.epoch, taken.epoch);
  // The old holder cannot grab it back while b renews.
  EXPECT_EQ(a->acquire("a", won.epoch).outcome, Outcome::Held);
}

TEST_F(EtcdArbiterTest, ReleaseLetsThePeerAcquireAtOnce) {
  auto a = arbiter(10000ms);  // long: only the release can explain b's grant
  auto b = arbiter(10000ms);
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  a->release("a", won.epoch);
  EXPECT_TRUE(leader_kv(etcd_->client_port(), vm_).is_null()) << "the key goes with the lease";
  const Grant taken = b->acquire("b", won.epoch);
  ASSERT_TRUE(taken.granted()) << taken.why;
  EXPECT_GT(taken.epoch, won.epoch);
  EXPECT_EQ(a->renew("a", won.epoch).outcome, Outcome::Refused);
  // Releasing an epoch one no longer holds must not revoke the new holder's lease.
  auto a_restarted = arbiter(10000ms);
  a_restarted->release("a", won.epoch);
  a->release("a", won.epoch);
  EXPECT_TRUE(b->renew("b", taken.epoch).granted());
}

// The lease alone is not enough: with the key deleted by hand (the lease lives on) and won
// by the peer, the old holder's keepalive still succeeds, so renew must read the key.
TEST_F(EtcdArbiterTest, RenewRefusesWhenTheKeyWasReplacedUnderALiveLease) {
  auto a = arbiter(10000ms);
  auto b = arbiter(10000ms);
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  const nlohmann::json del = {{"key", base64_encode(etcd_leader_key(vm_))}};
  ASSERT_NE(http_exchange(etcd_->client_port(), "POST", "/v3/kv/deleterange", del.dump()).find("\"deleted\":\"1\""),
            std::string::npos);
  const Grant taken = b->acquire("b", won.epoch);
  ASSERT_TRUE(taken.granted()) << taken.why;
  const Grant stale = a->renew("a", won.epoch);
  EXPECT_EQ(stale.outcome, Outcome::Refused) << stale.why;
  EXPECT_EQ(stale.holder, "b");
  EXPECT_NE(stale.why.find("no longer names a"), std::string::npos) << stale.why;
}

TEST_F(EtcdArbiterTest, EpochAtOrBelowKnownEpochIsRefusedAndLeavesNoHolder) {
  auto a = arbiter();
  const Grant refused = a->acquire("a", 1'000'000'000);
  EXPECT_EQ(refused.outcome, Outcome::Refused) << refused.why;
  EXPECT_NE(refused.why.find("state mismatch"), std::string::npos) << refused.why;
  EXPECT_TRUE(leader_kv(etcd_->client_port(), vm_).is_null()) << "a refused win must give the key back";
  EXPECT_TRUE(a->acquire("a", 0).granted());
}

// Issue 7: the holder's epoch CAS (two txns on its own lease). The new epoch is the
// re-created leader key's create_revision; older replicas are refused (also from a fresh
// arbiter object: the floor is in etcd), after the holder's lease lapsed too.
TEST_F(EtcdArbiterTest, AdvanceByTheHolderRefusesOlderReplicasAndSurvivesInEtcd) {
  auto a = arbiter(1000ms), b = arbiter(1000ms);
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  const Grant not_holder = b->advance("b", won.epoch);
  EXPECT_EQ(not_holder.outcome, Outcome::Refused) << not_holder.why;
  const Grant advanced = a->advance("a", won.epoch);
  ASSERT_EQ(advanced.outcome, Outcome::Granted) << advanced.why;
  EXPECT_GT(advanced.epoch, won.epoch);
  const auto kv = leader_kv(etcd_->client_port(), vm_);
  ASSERT_TRUE(kv.is_object());
  EXPECT_EQ(kv["create_revision"].get<std::string>(), std::to_string(advanced.epoch));
  EXPECT_TRUE(a->renew("a", advanced.epoch).granted());
  EXPECT_EQ(a->renew("a", won.epoch).outcome, Outcome::Refused);
  const Grant repeated = a->advance("a", won.epoch);  // a retry after a lost answer: the same advance
  ASSERT_TRUE(repeated.granted()) << repeated.why;
  EXPECT_EQ(repeated.epoch, advanced.epoch);
  EXPECT_EQ(a->advance("a", won.epoch - 1).outcome, Outcome::Refused) << "the compare must fail on an old epoch";

  auto fresh = arbiter(1000ms);
  EXPECT_EQ(fresh->acquire("b", won.epoch).outcome, Outcome::Held) << "a still holds the key";
  // a stops renewing: once its key is gone the stale replica is refused, a current one wins.
  const auto until = std::chrono::steady_clock::now() + 10s;
  while (!leader_kv(etcd_->client_port(), vm_).is_null() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(leader_kv(etcd_->client_port(), vm_).is_null()) << "a's lease never lapsed";
  const Grant stale = fresh->acquire("b", won.epoch);
  EXPECT_EQ(stale.outcome, Outcome::Refused) << stale.why;
  EXPECT_NE(stale.why.find("stale replica"), std::string::npos) << stale.why;
  EXPECT_TRUE(leader_kv(etcd_->client_port(), vm_).is_null()) << "a refused acquire must not take the key";
  const Grant current = fresh->acquire("b", advanced.epoch);
  ASSERT_TRUE(current.granted()) << current.why;
  EXPECT_GT(current.epoch, advanced.epoch);
  EXPECT_EQ(a->advance("a", advanced.epoch).outcome, Outcome::Refused);
}

TEST_F(EtcdArbiterTest, ManyPairsShareOneEtcdWithOneKeyEach) {
  auto vm1 = make_arbiter(config_for(etcd_->url(), vm_ + "-1"));
  auto vm2 = make_arbiter(config_for(etcd_->url(), vm_ + "-2"));
  const Grant one = vm1->acquire("a", 0);
  const Grant two = vm2->acquire("a", 0);
  ASSERT_TRUE(one.granted()) << one.why;
  ASSERT_TRUE(two.granted()) << two.why;
  EXPECT_GT(two.epoch, one.epoch) << "revisions are global to the etcd";
  EXPECT_TRUE(vm1->renew("a", one.epoch).granted());
  EXPECT_EQ(vm2->renew("a", one.epoch).outcome, Outcome::Refused);
}

TEST_F(EtcdArbiterTest, FallsOverToTheNextEndpoint) {
  const std::string dead = "http://127.0.0.1:" + std::to_string(free_port());
  auto a = make_arbiter(config_for(dead + "," + etcd_->url(), vm_));
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  EXPECT_TRUE(a->renew("a", won.epoch).granted());
}

TEST_F(EtcdArbiterTest, HostNamesAreLookedUp) {
  auto a = make_arbiter(config_for("http://localhost:" + std::to_string(etcd_->client_port()), vm_));
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  auto nowhere = make_arbiter(config_for("http://no-such-host.invalid:2379", vm_));
  const Grant lost = nowhere->acquire("b", won.epoch);
  EXPECT_EQ(lost.outcome, Outcome::Unreachable) << lost.why;
  EXPECT_NE(lost.why.find("no-such-host.invalid"), std::string::npos) << lost.why;
}

TEST_F(EtcdArbiterTest, NothingListeningIsUnreachable) {
  auto a = make_arbiter(config_for("http://127.0.0.1:" + std::to_string(free_port()), vm_));
  const auto start = Clock::now();
  const Grant grant = a->acquire("a", 0);
  EXPECT_EQ(grant.outcome, Outcome::Unreachable);
  EXPECT_NE(grant.why.find("refused"), std::string::npos) << grant.why;
  EXPECT_EQ(a->renew("a", 1).outcome, Outcome::Unreachable);
  a->release("a", 1);  // best effort: must not throw
  EXPECT_LT(Clock::now() - start, 5s);
}

// kill -9 the etcd under a holder: Unreachable, then after a restart on the same data the
// lease is still there, and the next winner's epoch is still higher (revisions persisted).
TEST(EtcdArbiterKill, KilledEtcdIsUnreachableThenWorksAgainWithHigherEpochs) {
  const std::string binary = find_etcd();
  if (binary.empty()) GTEST_SKIP() << "no etcd binary in PATH (Debian: apt-get install etcd-server, or set TANDEM_ETCD)";
  EtcdProcess etcd(binary);
  etcd.start();
  auto a = make_arbiter(config_for(etcd.url(), "vm-kill", 5000ms));
  auto b = make_arbiter(config_for(etcd.url(), "vm-kill", 5000ms));
  const Grant won = a->acquire("a", 0);
  ASSERT_TRUE(won.granted()) << won.why;
  ASSERT_TRUE(a->renew("a", won.epoch).granted());

  etcd.kill9();
  const auto start = Clock::now();
  const Grant lost = a->renew("a", won.epoch);
  EXPECT_EQ(lost.outcome, Outcome::Unreachable) << lost.why;
  EXPECT_FALSE(lost.why.empty());
  EXPECT_EQ(b->acquire("b", won.epoch).outcome, Outcome::Unreachable);
  EXPECT_LT(Clock::now() - start, 10s);

  etcd.start();
  // The lease survived the restart (etcd re-arms leases when it comes back).
  Grant back = a->renew("a", won.epoch);
  ASSERT_TRUE(back.granted()) << back.why;
  EXPECT_EQ(back.epoch, won.epoch);
  EXPECT_EQ(b->acquire("b", won.epoch).outcome, Outcome::Held);
  a->release("a", won.epoch);
  const Grant taken = b->acquire("b", won.epoch);
  ASSERT_TRUE(taken.granted()) << taken.why;
  EXPECT_GT(taken.epoch, won.epoch);
}

// ---- a hostile peer: a real TCP server that answers like no etcd would -------------------

class FakeHttpServer {
 public:
  // `respond(path)` returns the raw bytes to send back; "" = say nothing and hold the
  // connection open until the client gives up.
  explicit FakeHttpServer(std::function<std::string(const std::string& path)> respond) : respond_(std::move(respond)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener_, 16) != 0)
      throw std::runtime_error("fake server: bind/listen failed");
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(listener_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }

 private:
  bool wait_readable(int fd, int ms) {
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, ms) > 0;
  }

  void serve() {
    while (!stop_) {
      if (!wait_readable(listener_, 50)) continue;
      const int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) continue;
      handle(fd);
      ::close(fd);
    }
  }

  // Reads one request (headers + Content-Length body), answers, and closes.
  void handle(int fd) {
    std::string request;
    char chunk[4096];
    size_t body_needed = std::string::npos;
    while (!stop_) {
      if (!wait_readable(fd, 50)) continue;
      const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
      if (n <= 0) return;
      request.append(chunk, size_t(n));
      const size_t end = request.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      if (body_needed == std::string::npos) {
        body_needed = 0;
        const auto cl = request.find("ontent-Length: ");
        if (cl != std::string::npos) body_needed = std::stoul(request.substr(cl + 15));
      }
      if (request.size() >= end + 4 + body_needed) break;
    }
    ++requests_;
    const size_t space = request.find(' ');
    const std::string path = request.substr(space + 1, request.find(' ', space + 1) - space - 1);
    const std::string reply = respond_(path);
    if (reply.empty()) {
      while (!stop_ && !(wait_readable(fd, 50) && ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT) == 0)) {
      }
      return;
    }
    ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
  }

  std::function<std::string(const std::string&)> respond_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread thread_;
};

std::string http_reply(const std::string& status, const std::string& body) {
  return "HTTP/1.1 " + status + "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: close\r\n\r\n" + body;
}

struct HostileCase {
  const char* name;
  std::string reply;
  Outcome expected;
  const char* why_contains;
};

TEST(EtcdArbiterHostile, GarbageRepliesBecomeUnreachableOrRefusedNeverACrash) {
  const std::vector<HostileCase> cases = {
      {"not http", "hello, this is not HTTP at all\r\n\r\n", Outcome::Unreachable, "etcd"},
      {"binary", std::string("\x00\xff\x13\x37\r\n\r\n", 8), Outcome::Unreachable, "etcd"},
      {"200 not json", http_reply("200 OK", "<html>hi</html>"), Outcome::Unreachable, "no JSON"},
      {"200 json array", http_reply("200 OK", "[1,2,3]"), Outcome::Unreachable, "no JSON object"},
      {"200 empty object", http_reply("200 OK", "{}"), Outcome::Unreachable, "header"},
      {"200 wrong types", http_reply("200 OK", R"({"header":{"revision":"seven"}})"), Outcome::Unreachable,
       "not an integer"},
      {"200 kvs not array", http_reply("200 OK", R"({"header":{"revision":"5"},"kvs":"x"})"), Outcome::Unreachable,
       "kvs"},
      {"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"header\":", Outcome::Unreachable, "etcd"},
      {"huge body", "HTTP/1.1 200 OK\r\nContent-Length: 200000000\r\n\r\n{", Outcome::Unreachable, "etcd"},
      {"500 html", http_reply("500 Internal Server Error", "<h1>oops</h1>"), Outcome::Unreachable, "HTTP 500"},
      {"404 plain", http_reply("404 Not Found", "404 page not found"), Outcome::Refused, "gateway"},
      {"no leader", http_reply("503 Service Unavailable", R"({"error":"etcdserver: no leader","code":14})"),
       Outcome::Unreachable, "no leader"},
      {"permission denied",
       http_reply("403 Forbidden", R"({"error":"etcdserver: permission denied","message":"etcdserver: permission denied","code":7})"),
       Outcome::Refused, "permission denied"},
      {"silent", "", Outcome::Unreachable, "no answer within"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    FakeHttpServer server([&](const std::string&) { return c.reply; });
    ArbiterConfig config = config_for(server.url(), "vm-hostile");
    config.timeout = 300ms;
    auto arbiter = make_arbiter(config);
    const auto start = Clock::now();
    const Grant acquired = arbiter->acquire("a", 0);
    EXPECT_EQ(acquired.outcome, c.expected) << acquired.why;
    EXPECT_NE(acquired.why.find(c.why_contains), std::string::npos) << acquired.why;
    const Grant renewed = arbiter->renew("a", 7);
    EXPECT_FALSE(renewed.granted()) << renewed.why;
    EXPECT_FALSE(renewed.why.empty());
    arbiter->release("a", 7);
    // Each call is bounded by the timeout (one reconnect at most for a closed keep-alive).
    EXPECT_LT(Clock::now() - start, 3s);
    EXPECT_GE(server.requests(), 1);
  }
}

// A well-formed reply whose leader key does not hold a leader record (someone wrote it by
// hand): the node must not treat it as free, nor as its own.
TEST(EtcdArbiterHostile, ForeignValueOnTheLeaderKeyIsHeldNotFree) {
  const std::string kv = R"({"header":{"revision":"9"},"kvs":[{"key":"eA==","create_revision":"4","mod_revision":"4",)"
                         R"("version":"1","value":"bm90IGpzb24=","lease":"0"}],"count":"1"})";
  FakeHttpServer server([&](const std::string& path) {
    if (path == "/v3/kv/range") return http_reply("200 OK", kv);
    return http_reply("500 Internal Server Error", "unexpected " + path);
  });
  auto arbiter = make_arbiter(config_for(server.url(), "vm-foreign"));
  const Grant grant = arbiter->acquire("a", 0);
  EXPECT_EQ(grant.outcome, Outcome::Held) << grant.why;
  EXPECT_EQ(grant.holder, "");
  EXPECT_EQ(grant.epoch, 4u);
  EXPECT_NE(grant.why.find("written by hand"), std::string::npos) << grant.why;
  const Grant renewed = arbiter->renew("a", 4);
  EXPECT_EQ(renewed.outcome, Outcome::Refused) << renewed.why;
}

// The keepalive is a streaming gateway method: its reply is {"result": ...} or
// {"error": {"grpc_code": ...}}. A lease etcd no longer knows comes back without a TTL.
TEST(EtcdArbiterHostile, KeepaliveStreamErrorsAndLapsedLeases) {
  const std::string owned_by_a =
      R"({"header":{"revision":"9"},"kvs":[{"key":"eA==","create_revision":"4","mod_revision":"5","version":"2",)"
      R"("value":")" + base64_encode(R"({"node":"a","epoch":4})") + R"(","lease":"77"}],"count":"1"})";
  for (const auto& [keepalive, expected, why] :
       std::vector<std::tuple<std::string, Outcome, std::string>>{
           {R"({"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader"}})", Outcome::Unreachable,
            "no leader"},
           {R"({"result":{"header":{"revision":"9"},"ID":"77"}})", Outcome::Refused, "expired"},
           {R"({"result":{"header":{"revision":"9"},"ID":"77","TTL":"2"}})", Outcome::Granted, "renewed"},
           {R"({"result":"nope"})", Outcome::Unreachable, "result"},
       }) {
    SCOPED_TRACE(keepalive);
    FakeHttpServer server([&](const std::string& path) {
      if (path == "/v3/kv/range") return http_reply("200 OK", owned_by_a);
      if (path == "/v3/lease/keepalive") return http_reply("200 OK", keepalive + "\n");
      return http_reply("500 Internal Server Error", "unexpected " + path);
    });
    auto arbiter = make_arbiter(config_for(server.url(), "vm-stream"));
    const Grant renewed = arbiter->renew("a", 4);
    EXPECT_EQ(renewed.outcome, expected) << renewed.why;
    EXPECT_NE(renewed.why.find(why), std::string::npos) << renewed.why;
    if (expected == Outcome::Granted) {
      EXPECT_EQ(renewed.ttl, 2000ms);
      EXPECT_EQ(renewed.epoch, 4u);
    }
  }
}

// ---- configuration and encoding ----------------------------------------------------------

TEST(EtcdArbiterConfig, TtlRoundsUpToWholeSeconds) {
  EXPECT_EQ(etcd_ttl_seconds(1ms), 1);
  EXPECT_EQ(etcd_ttl_seconds(1000ms), 1);
  EXPECT_EQ(etcd_ttl_seconds(1001ms), 2);
  EXPECT_EQ(etcd_ttl_seconds(2000ms), 2);
  EXPECT_EQ(etcd_ttl_seconds(2500ms), 3);
  EXPECT_EQ(etcd_ttl_seconds(0ms), 1);
}

TEST(EtcdArbiterConfig, EndpointsParseOrExplainWhy) {
  const auto endpoints = parse_etcd_endpoints("http://127.0.0.1:2379, http://etcd-b:2380/,http://[::1]:2381");
  ASSERT_EQ(endpoints.size(), 3u);
  EXPECT_EQ(endpoints[0].host, "127.0.0.1");
  EXPECT_EQ(endpoints[0].port, "2379");
  EXPECT_EQ(endpoints[1].url(), "http://etcd-b:2380");
  EXPECT_EQ(endpoints[2].host, "::1");
  EXPECT_EQ(endpoints[2].port, "2381");
  for (const char* bad : {"", "127.0.0.1:2379", "https://e:2379", "http://e", "http://e:0", "http://e:99999",
                          "http://e:23x", "http://:2379", "http://e:2379/v3", "http://e:2379,,http://f:1"}) {
    EXPECT_THROW(parse_etcd_endpoints(bad), std::invalid_argument) << bad;
  }
  try {
    parse_etcd_endpoints("https://e:2379");
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("https is not supported"), std::string::npos) << e.what();
  }
}

TEST(EtcdArbiterConfig, MakeArbiterChecksTheSettings) {
  ArbiterConfig config = config_for("http://127.0.0.1:2379", "vm1");
  EXPECT_NE(make_arbiter(config)->describe().find("etcd http://127.0.0.1:2379"), std::string::npos);
  auto no_url = config;
  no_url.etcd = "";
  EXPECT_THROW(make_arbiter(no_url), std::invalid_argument);
  auto no_vm = config;
  no_vm.vm_id = "";
  EXPECT_THROW(make_arbiter(no_vm), std::invalid_argument);
  auto slash = config;
  slash.vm_id = "a/b";
  EXPECT_THROW(make_arbiter(slash), std::invalid_argument);
  auto no_lease = config;
  no_lease.lease = 0ms;
  EXPECT_THROW(make_arbiter(no_lease), std::invalid_argument);
}

TEST(EtcdArbiterConfig, Base64RoundTripsAndRejectsGarbage) {
  for (const std::string text : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "/tandem/vm1/leader"})
    EXPECT_EQ(base64_decode(base64_encode(text)), text);
  EXPECT_EQ(base64_encode("/tandem/vm1/leader"), "L3RhbmRlbS92bTEvbGVhZGVy");
  std::string all(256, '\0');
  for (int i = 0; i < 256; ++i) all[size_t(i)] = char(i);
  EXPECT_EQ(base64_decode(base64_encode(all)), all);
  for (const char* bad : {"abc", "a===", "ab=c", "!!!!", "Zm9v\n", "Zg==Zg=="}) EXPECT_FALSE(base64_decode(bad)) << bad;
}

}  // namespace
}  // namespace tandem::fencing
