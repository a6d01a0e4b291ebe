// tandemd and tandemctl as an operator runs them: separate processes, exit statuses, one-line
// errors naming file:line:key, the control socket serving status, and a clean SIGTERM stop.
// (The pair itself, two daemons replicating, is tested by the pair tests.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/child_process.h"
#include "tests/vmm/rv_asm.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using namespace tandem::vmm::testing;

struct Outcome {
  int status = -1;  // exit status, or 128+signal
  std::string out;
  std::string err;
  size_t err_line_count() const {
    std::istringstream in(err);
    size_t n = 0;
    for (std::string l; std::getline(in, l);) ++n;
    return n;
  }
};

using tandem::test::slurp;

class Daemon : public ::testing::Test {
 protected:
  Daemon() {
    // Short: the control socket lives here and a Unix socket path has at most 107 bytes.
    dir = fs::temp_directory_path() / ("tdd_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    write("psk", "0123456789abcdef0123456789abcdef\n");
    ::chmod(path("psk").c_str(), 0600);
    RvAsm idle;  // a guest that sleeps forever: wfi; j wfi
    idle.wfi();
    idle.j(-4);
    const auto bytes = idle.bytes();
    std::ofstream(path("idle.bin"), std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  ~Daemon() override {
    for (pid_t pid : running) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    fs::remove_all(dir);
  }

  std::string path(const std::string& name) const { return (dir / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name), std::ios::binary) << text;
    return path(name);
  }

  std::string config(const std::string& extra_pair = "") const {
    return "[node]\nname = \"a\"\nstate_dir = \"state\"\nlog_level = \"info\"\n"  // 1-4
           "[vm]\nguest = \"idle.bin\"\nmem_mib = 16\n"                            // 5-7
           "[pair]\nrole = \"primary\"\nlisten = \"127.0.0.1:0\"\npsk_file = \"psk\"\n" +  // 8-11
           extra_pair +
           "[console]\nlisten = \"127.0.0.1:0\"\n"
           "[control]\nsocket = \"a.sock\"\n";
  }

  // Starts `binary args...` with stdout/stderr into files named after `tag`.
  pid_t spawn(const char* binary, const std::vector<std::string>& args, const std::string& tag) {
    const pid_t pid = tandem::test::spawn_process(binary, args, path(tag + ".out"), path(tag + ".err"));
    running.push_back(pid);
    return pid;
  }

  // Waits (generously) for `pid` to exit and collects what it printed.
  Outcome finish(pid_t pid, const std::string& tag, std::chrono::seconds timeout = 60s) {
    Outcome o;
    o.status = tandem::test::wait_exit_status(pid, timeout, tag);
    std::erase(running, pid);
    o.out = slurp(path(tag + ".out"));
    o.err = slurp(path(tag + ".err"));
    return o;
  }

  Outcome run(const char* binary, const std::vector<std::string>& args) {
    return finish(spawn(binary, args, "run"), "run");
  }

  // Waits for the daemon's control socket to answer a status request.
  bool wait_for_control(const std::string& socket, pid_t daemon) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(daemon, nullptr, WNOHANG) != 0) return false;  // it died
      struct stat st {};
      if (::stat(socket.c_str(), &st) == 0 && run(TANDEMCTL_BIN, {"-c", socket, "status"}).status == 0) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  // A config error: status 2 and one stderr line holding every fragment.
  void expect_config_error(const std::string& text, const std::vector<std::string>& fragments) {
    const Outcome o = run(TANDEMD_BIN, {"--config", write("host.toml", text)});
    EXPECT_EQ(o.status, 2) << o.err;
    EXPECT_EQ(o.err_line_count(), 1u) << o.err;
    for (const auto& f : fragments) EXPECT_NE(o.err.find(f), std::string::npos) << "'" << f << "' not in: " << o.err;
  }

  fs::path dir;
  std::vector<pid_t> running;
};

TEST_F(Daemon, BadConfigIsOneLineNamingFileLineKeyAndStatusTwo) {
  expect_config_error(config("heartbeat_ms = \"fast\"\n"),
                      {"host.toml:12: [pair] heartbeat_ms: expected a positive integer, got \"fast\""});
  expect_config_error(config("heartbeat = 5\n"), {"host.toml:12:", "[pair] heartbeat", "unknown key"});
  expect_config_error(config("peer = \"example.com:7200\"\n"), {"host.toml:12:", "[pair] peer", "numeric host"});
  std::string no_key = config();
  no_key.replace(no_key.find("psk_file = \"psk\""), 16, "psk_file = \"gone\"");
  expect_config_error(no_key, {"host.toml:11:", "[pair] psk_file", "gone"});
  expect_config_error("[pair\n", {"host.toml:1:", "TOML syntax error"});
  const Outcome missing = run(TANDEMD_BIN, {"--config", path("absent.toml")});
  EXPECT_EQ(missing.status, 2);
  EXPECT_NE(missing.err.find("absent.toml"), std::string::npos) << missing.err;
}

TEST_F(Daemon, UsageErrorsAreStatusTwoAndHelpIsComplete) {
  EXPECT_EQ(run(TANDEMD_BIN, {}).status, 2);
  EXPECT_EQ(run(TANDEMD_BIN, {"--config", write("host.toml", config()), "--no-such-flag"}).status, 2);
  const Outcome bad_flag = run(TANDEMD_BIN, {"--config", write("host.toml", config()), "--listen", "nowhere"});
  EXPECT_EQ(bad_flag.status, 2);
  EXPECT_NE(bad_flag.err.find("--listen"), std::string::npos) << bad_flag.err;

  const Outcome help = run(TANDEMD_BIN, {"--help"});
  EXPECT_EQ(help.status, 0);
  for (const char* flag : {"--config", "--role", "--listen", "--peer", "--console", "--control", "--guest", "--disk",
                           "--mem", "--name", "--state-dir", "--log-level"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << flag << " missing from --help";

  const Outcome ctl_help = run(TANDEMCTL_BIN, {"--help"});
  EXPECT_EQ(ctl_help.status, 0);
  for (const char* word : {"--control", "status", "protect", "unprotect", "failover"})
    EXPECT_NE(ctl_help.out.find(word), std::string::npos) << word << " missing from tandemctl --help";
  EXPECT_EQ(run(TANDEMCTL_BIN, {}).status, 2);
  EXPECT_EQ(run(TANDEMCTL_BIN, {"-c", path("x.sock"), "protect"}).status, 2);
  const Outcome bad_peer = run(TANDEMCTL_BIN, {"-c", path("x.sock"), "protect", "peer-host"});
  EXPECT_EQ(bad_peer.status, 2);
  EXPECT_NE(bad_peer.err.find("numeric host"), std::string::npos) << bad_peer.err;
}

TEST_F(Daemon, TandemctlNamesTheSocketItCannotReach) {
  const Outcome o = run(TANDEMCTL_BIN, {"--control", path("nobody.sock"), "status"});
  EXPECT_EQ(o.status, 2);
  EXPECT_NE(o.err.find(path("nobody.sock")), std::string::npos) << o.err;
  EXPECT_EQ(o.out, "");
}

TEST_F(Daemon, ServesStatusAndStopsCleanlyOnSigterm) {
  const std::string socket = path("a.sock");
  const pid_t daemon = spawn(TANDEMD_BIN, {"--config", write("host.toml", config())}, "daemon");
  ASSERT_TRUE(wait_for_control(socket, daemon)) << slurp(path("daemon.err"));

  const Outcome text = run(TANDEMCTL_BIN, {"-c", socket, "status"});
  EXPECT_EQ(text.status, 0) << text.err;
  EXPECT_EQ(text.out.rfind("node a  role primary  state ", 0), 0u) << text.out;
  EXPECT_NE(text.out.find("\nicount "), std::string::npos) << text.out;

  const Outcome as_json = run(TANDEMCTL_BIN, {"-c", socket, "status", "--json"});
  EXPECT_EQ(as_json.status, 0) << as_json.err;
  const auto status = nlohmann::json::parse(as_json.out);
  EXPECT_EQ(status["node"], "a");
  EXPECT_EQ(status["role"], "primary");
  EXPECT_EQ(status["vm_id"], "idle.bin");

  // A second daemon on the same control socket is refused; the first keeps serving.
  std::string second_config = config();
  second_config.replace(second_config.find("state_dir = \"state\""), 19, "state_dir = \"state2\"");
  const Outcome second = run(TANDEMD_BIN, {"--config", write("second.toml", second_config)});
  EXPECT_EQ(second.status, 1) << second.err;
  EXPECT_NE(second.err.find("another process"), std::string::npos) << second.err;
  EXPECT_EQ(run(TANDEMCTL_BIN, {"-c", socket, "status"}).status, 0);

  ::kill(daemon, SIGTERM);
  const Outcome stopped = finish(daemon, "daemon");
  EXPECT_EQ(stopped.status, 0) << stopped.err;
  EXPECT_NE(stopped.err.find(" a "), std::string::npos) << "log lines carry the node name: " << stopped.err;
  EXPECT_FALSE(fs::exists(socket));
  EXPECT_TRUE(fs::is_directory(path("state")));
}

}  // namespace
