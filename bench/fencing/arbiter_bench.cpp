// Latency of one arbiter call, next to the bare operation underneath it, in the same run:
//   witness acquire/renew  vs  TCP connect + 1-byte round trip on loopback (a plain echo)
//   witness epoch grant    (includes the state file's fsync + rename + fsync(dir))
//   disk renew             vs  one 512-byte pwrite on an O_DSYNC descriptor
//   command acquire (true) vs  fork + exec + wait of /bin/true
// Usage: arbiter_bench [ROUNDS] [DIR]   (DIR: where the files go; default /tmp)
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "fencing/arbiter.h"
#include "fencing/witness/server.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

void report(const char* name, std::vector<double>& us, const char* reference = nullptr, double ref_p50 = 0) {
  std::sort(us.begin(), us.end());
  const double p50 = us[us.size() / 2], p99 = us[std::min(us.size() - 1, us.size() * 99 / 100)];
  std::printf("%-34s p50 %9.1f us  p99 %9.1f us", name, p50, p99);
  if (reference) std::printf("   (%.1fx %s)", p50 / ref_p50, reference);
  std::printf("\n");
}

std::vector<double> measure(int rounds, const std::function<void()>& op) {
  std::vector<double> us;
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = Clock::now();
    op();
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return us;
}

double p50_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The reference for the witness: a thread that accepts, echoes one byte and closes.
class Echo {
 public:
  Echo() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::listen(fd_, 64);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        char b;
        if (::read(c, &b, 1) == 1) (void)!::write(c, &b, 1);
        ::close(c);
      }
    });
  }
  ~Echo() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  void round_trip() const {
    const int c = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port_);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::connect(c, reinterpret_cast<sockaddr*>(&a), sizeof a);
    char b = 'x';
    (void)!::write(c, &b, 1);
    (void)!::read(c, &b, 1);
    ::close(c);
  }

 private:
  int fd_;
  uint16_t port_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::max(10, std::atoi(argv[1])) : 300;
  const std::filesystem::path dir =
      std::filesystem::path(argc > 2 ? argv[2] : "/tmp") / ("arbiter_bench_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  spdlog::set_level(spdlog::level::err);
  using namespace tandem::fencing;
  const std::string psk = "bench-psk-bench-psk-bench-psk-00";
  std::printf("fencing arbiters, %d rounds each (files in %s)\n", rounds, dir.c_str());

  {  // witness
    WitnessOptions o;
    o.state_file = (dir / "witness.state").string();
    o.psk = psk;
    WitnessServer server(o);
    std::thread io([&] { server.run(); });
    ArbiterConfig c;
    c.kind = "witness";
    c.vm_id = "vm1";
    c.psk = psk;
    c.witness = server.endpoint();
    auto a = make_arbiter(c);
    Echo echo;
    auto ref = measure(rounds, [&] { echo.round_trip(); });
    const double ref_p50 = p50_of(ref);
    report("tcp connect + round trip (ref)", ref);
    uint64_t epoch = a->acquire("a", 0).epoch;
    auto renew = measure(rounds, [&] { a->renew("a", epoch); });
    report("witness renew", renew, "ref", ref_p50);
    auto acquire = measure(rounds, [&] { a->acquire("a", epoch); });
    report("witness acquire (holder)", acquire, "ref", ref_p50);
    auto grant = measure(rounds, [&] {  // release + acquire: every acquire bumps the epoch (fsync)
      a->release("a", epoch);
      epoch = a->acquire("a", epoch).epoch;
    });
    report("witness release + epoch grant", grant, "ref", ref_p50);
    server.stop();
    io.join();
  }
  {  // disk
    const std::string path = (dir / "vm1.lease").string();
    ArbiterConfig c;
    c.kind = "disk";
    c.vm_id = "vm1";
    c.disk_path = path;
    auto a = make_arbiter(c);
    const uint64_t epoch = a->acquire("a", 0).epoch;
    const int fd = ::open((dir / "raw.block").c_str(), O_RDWR | O_CREAT | O_DSYNC, 0600);
    char block[512] = {};
    auto ref = measure(rounds, [&] { (void)!::pwrite(fd, block, sizeof block, 0); });
    ::close(fd);
    const double ref_p50 = p50_of(ref);
    report("pwrite 512 B O_DSYNC (ref)", ref);
    auto renew = measure(rounds, [&] { a->renew("a", epoch); });
    report("disk renew", renew, "ref", ref_p50);
  }
  {  // command
    ArbiterConfig c;
    c.kind = "command";
    c.fence_command = "true";
    c.timeout = std::chrono::seconds(5);
    auto a = make_arbiter(c);
    const int n = std::max(10, rounds / 5);
    auto ref = measure(n, [&] {
      pid_t pid;
      char* args[] = {const_cast<char*>("/bin/true"), nullptr};
      posix_spawn(&pid, "/bin/true", nullptr, nullptr, args, environ);
      ::waitpid(pid, nullptr, 0);
    });
    const double ref_p50 = p50_of(ref);
    report("fork+exec /bin/true (ref)", ref);
    auto acquire = measure(n, [&] { a->acquire("b", 1); });
    report("command acquire (sh -c true)", acquire, "ref", ref_p50);
  }
  std::filesystem::remove_all(dir);
  return 0;
}
