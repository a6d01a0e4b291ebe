// The control socket: commands work, bad requests get clear errors, and a client that
// misbehaves never disturbs forwarding.
#include <gtest/gtest.h>
#include <sys/un.h>

#include "netsim/control.h"
#include "netsim/simulator.h"
#include "peers.h"

namespace netsim {
namespace {

using namespace std::chrono_literals;
using namespace netsim::test;
using nlohmann::json;

class Control : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = sim_.add_link(tcp_link("repl", echo_.port()));
    server_ = std::make_unique<ControlServer>(sim_, path_);
  }
  void TearDown() override { server_.reset(); }

  json request(const json& r) { return control_request(path_, r); }

  void expect_forwarding() {
    Fd c = tcp_connect(port_);
    ASSERT_TRUE(c);
    ASSERT_TRUE(send_all(c.get(), "ok", 2));
    char buf[2];
    EXPECT_EQ(recv_exact(c.get(), buf, 2, 5000ms), 2u);
  }

  Fd raw_client() {
    Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path_.c_str());
    EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }

  TcpServer echo_{echo_handler};
  Simulator sim_{SimulatorOptions{1, ""}};
  std::string path_ = ::testing::TempDir() + "netsim_control_" + std::to_string(::getpid()) + ".sock";
  std::unique_ptr<ControlServer> server_;
  uint16_t port_ = 0;
};

TEST_F(Control, SetListStatsClear) {
  auto r = request({{"cmd", "set"}, {"link", "repl"}, {"fault", "delay"}, {"direction", "up"},
                    {"params", {{"delay", "5ms"}, {"jitter", "1ms"}}}});
  ASSERT_TRUE(r["ok"]) << r.dump();
  r = request({{"cmd", "list"}});
  ASSERT_TRUE(r["ok"]);
  ASSERT_EQ(r["links"][0]["faults"].size(), 1u);
  EXPECT_EQ(r["links"][0]["faults"][0]["fault"], "delay");
  EXPECT_EQ(r["links"][0]["faults"][0]["direction"], "up");
  expect_forwarding();
  r = request({{"cmd", "stats"}, {"link", "repl"}});
  ASSERT_TRUE(r["ok"]);
  EXPECT_EQ(r["links"][0]["up"]["bytes_out"], 2);
  EXPECT_EQ(r["links"][0]["connections"]["accepted"], 1);
  r = request({{"cmd", "clear"}, {"link", "repl"}});
  EXPECT_EQ(r["cleared"], 1);
  EXPECT_TRUE(sim_.stats("repl").faults.empty());
}

TEST_F(Control, PartitionAndHeal) {
  auto r = request({{"cmd", "partition"}, {"name", "p1"}, {"links", {"repl"}}, {"direction", "up"}});
  ASSERT_TRUE(r["ok"]) << r.dump();
  EXPECT_EQ(r["cuts"][0]["link"], "repl");
  r = request({{"cmd", "heal"}, {"name", "p1"}});
  EXPECT_EQ(r["healed"], 1);
}

TEST_F(Control, BadRequestsGetClearErrors) {
  auto error_of = [&](const json& r) {
    auto reply = request(r);
    EXPECT_FALSE(reply["ok"]) << reply.dump();
    return reply.value("error", std::string());
  };
  EXPECT_NE(error_of({{"cmd", "explode"}}).find("unknown command 'explode'"), std::string::npos);
  EXPECT_NE(error_of({{"cmd", "set"}, {"link", "repl"}, {"fault", "teleport"}}).find("unknown fault"), std::string::npos);
  EXPECT_NE(error_of({{"cmd", "set"}, {"link", "nope"}, {"fault", "stall"}}).find("unknown link 'nope'"),
            std::string::npos);
  EXPECT_NE(error_of({{"cmd", "set"}, {"link", "repl"}, {"fault", "delay"}, {"params", {{"delay", "-1s"}}}})
                .find("negative"),
            std::string::npos);
  EXPECT_NE(error_of({{"cmd", "set"}, {"link", "repl"}, {"fault", "loss"}, {"params", {{"probability", 0.1}}}})
                .find("applies to UDP"),
            std::string::npos);
  EXPECT_NE(error_of({{"cmd", "set"}, {"link", "repl"}, {"fault", "stall"}, {"direction", "left"}}).find("direction"),
            std::string::npos);
  EXPECT_NE(error_of({{"link", "repl"}}).find("missing 'cmd'"), std::string::npos);
  EXPECT_NE(error_of(json::array({1, 2})).find("JSON object"), std::string::npos);
  expect_forwarding();
}

TEST_F(Control, GarbageAndHalfSentCommandsDoNotDisturbForwarding) {
  {
    Fd raw = raw_client();
    const std::string garbage = "this is not json\n";
    ASSERT_TRUE(send_all(raw.get(), garbage.data(), garbage.size()));
    char reply[256] = {};
    ASSERT_TRUE(wait_readable(raw.get(), 5000ms));
    const ssize_t n = ::recv(raw.get(), reply, sizeof reply - 1, 0);
    ASSERT_GT(n, 0);
    EXPECT_NE(std::string(reply).find("not valid JSON"), std::string::npos) << reply;
  }
  {
    // Disconnect in the middle of a command.
    Fd raw = raw_client();
    const std::string half = R"({"cmd":"set","link":"repl","fau)";
    ASSERT_TRUE(send_all(raw.get(), half.data(), half.size()));
  }
  expect_forwarding();
  auto r = request({{"cmd", "ping"}});
  EXPECT_TRUE(r["ok"]);
  EXPECT_TRUE(sim_.stats("repl").faults.empty()) << "the half command did nothing";
}

TEST_F(Control, UnreachableSocketIsAClearError) {
  try {
    control_request(path_ + ".missing", {{"cmd", "ping"}});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach control socket"), std::string::npos);
  }
}

}  // namespace
}  // namespace netsim
