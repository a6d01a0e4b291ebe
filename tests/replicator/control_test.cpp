// The control socket with a fake node behind it: every command round trip, refusals,
// hostile clients (garbage, disconnect mid-request, oversize lines), socket file handling,
// and the status text tandemctl prints.
#include "replicator/control.h"
#include "tools/tandemctl_status.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

namespace {

using namespace tandem::replicator;
using tandem::tools::format_status;
using nlohmann::json;
namespace asio = boost::asio;
using local = asio::local::stream_protocol;
namespace fs = std::filesystem;

class FakeNode : public ControlHandler {
 public:
  NodeStatus status() override {
    std::lock_guard lock(mutex);
    ++status_calls;
    if (throw_on_status) throw std::runtime_error("boom");
    return current;
  }
  tandem::Result<void> protect(const std::string& peer) override {
    std::lock_guard lock(mutex);
    calls.push_back("protect " + peer);
    return answer();
  }
  tandem::Result<void> unprotect() override {
    std::lock_guard lock(mutex);
    calls.push_back("unprotect");
    return answer();
  }
  tandem::Result<void> failover() override {
    std::lock_guard lock(mutex);
    calls.push_back("failover");
    return answer();
  }

  tandem::Result<void> answer() const {
    if (refusal.empty()) return {};
    return tandem::Error{tandem::ErrorKind::WrongState, refusal};
  }

  std::mutex mutex;
  NodeStatus current;
  std::string refusal;
  std::vector<std::string> calls;
  int status_calls = 0;
  bool throw_on_status = false;
};

NodeStatus example_status() {
  NodeStatus s;
  s.node_name = "a";
  s.vm_id = "kv";
  s.role = Role::Primary;
  s.state = PairState::Protected;
  s.epoch = 3;
  s.icount = 123456789;
  s.peer_icount = 123450000;
  s.lag_instructions = 6789;
  s.lag_ms = 0.006789;
  s.log_rate_kb_s = 12.3;
  s.log_bytes = 1'200'000;
  s.last_audit_icount = 120000000;
  s.last_audit_ok = true;
  s.sync = {3, 4'100'000, 210.3, true};
  s.peer = "127.0.0.1:7200";
  s.console = "127.0.0.1:7300";
  s.console_output = {0, 0, 4200, 120, 85.0, 410.0};
  s.net_output = {1514, 1, 2'000'000, 1500, 120.0, 900.0};
  return s;
}

// A raw client, for what tandemctl never sends.
class RawClient {
 public:
  explicit RawClient(const std::string& path) : socket(io) { socket.connect(local::endpoint(path)); }
  void send(const std::string& bytes) { asio::write(socket, asio::buffer(bytes)); }
  // The next reply line, or "" at EOF.
  std::string read_line() {
    boost::system::error_code ec;
    const size_t n = asio::read_until(socket, input, '\n', ec);
    if (ec) return "";
    std::string line(asio::buffers_begin(input.data()), asio::buffers_begin(input.data()) + n - 1);
    input.consume(n);
    return line;
  }
  bool closed_by_server() {
    char byte;
    boost::system::error_code ec;
    asio::read(socket, asio::buffer(&byte, 1), ec);
    return ec == asio::error::eof || ec == asio::error::connection_reset;
  }

  asio::io_context io;
  local::socket socket;
  asio::streambuf input;
};

class ControlTest : public ::testing::Test {
 protected:
  ControlTest() {
    static std::atomic<int> counter{0};
    // Short: a Unix socket path has at most 107 bytes.
    dir = fs::temp_directory_path() / ("tdctl_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir);
    path = (dir / "c.sock").string();
    node.current = example_status();
  }
  ~ControlTest() override { fs::remove_all(dir); }

  json request(const json& r) { return control_request(path, r, std::chrono::seconds(30)); }

  fs::path dir;
  std::string path;
  FakeNode node;
};

TEST_F(ControlTest, StatusRoundTripCarriesEveryField) {
  ControlServer server(path, node);
  const json reply = request({{"cmd", "status"}});
  ASSERT_TRUE(reply["ok"].get<bool>()) << reply.dump();
  const NodeStatus s = status_from_json(reply["status"]);
  const NodeStatus e = example_status();
  EXPECT_EQ(s.node_name, e.node_name);
  EXPECT_EQ(s.vm_id, e.vm_id);
  EXPECT_EQ(s.role, e.role);
  EXPECT_EQ(s.state, e.state);
  EXPECT_EQ(s.epoch, e.epoch);
  EXPECT_EQ(s.icount, e.icount);
  EXPECT_EQ(s.peer_icount, e.peer_icount);
  EXPECT_EQ(s.lag_instructions, e.lag_instructions);
  EXPECT_DOUBLE_EQ(s.lag_ms, e.lag_ms);
  EXPECT_DOUBLE_EQ(s.log_rate_kb_s, e.log_rate_kb_s);
  EXPECT_EQ(s.log_bytes, e.log_bytes);
  EXPECT_EQ(s.last_audit_icount, e.last_audit_icount);
  EXPECT_EQ(s.last_audit_ok, e.last_audit_ok);
  EXPECT_EQ(s.sync.rounds, e.sync.rounds);
  EXPECT_EQ(s.sync.bytes, e.sync.bytes);
  EXPECT_DOUBLE_EQ(s.sync.rate_mb_s, e.sync.rate_mb_s);
  EXPECT_EQ(s.sync.done, e.sync.done);
  EXPECT_EQ(s.peer, e.peer);
  EXPECT_EQ(s.console, e.console);
  for (const auto& [got, want] : {std::pair{&s.console_output, &e.console_output}, std::pair{&s.net_output, &e.net_output}}) {
    EXPECT_EQ(got->held_bytes, want->held_bytes);
    EXPECT_EQ(got->held_items, want->held_items);
    EXPECT_EQ(got->released_bytes, want->released_bytes);
    EXPECT_EQ(got->released_items, want->released_items);
    EXPECT_DOUBLE_EQ(got->latency_p50_us, want->latency_p50_us);
    EXPECT_DOUBLE_EQ(got->latency_max_us, want->latency_max_us);
  }
  EXPECT_EQ(reply["status"]["state"], "PROTECTED");
  EXPECT_EQ(reply["status"]["role"], "primary");
}

TEST_F(ControlTest, ProtectUnprotectFailoverReachTheNode) {
  ControlServer server(path, node);
  EXPECT_EQ(request({{"cmd", "protect"}, {"peer", "127.0.0.1:7200"}}), json({{"ok", true}}));
  EXPECT_EQ(request({{"cmd", "unprotect"}}), json({{"ok", true}}));
  EXPECT_EQ(request({{"cmd", "failover"}}), json({{"ok", true}}));
  std::lock_guard lock(node.mutex);
  EXPECT_EQ(node.calls, (std::vector<std::string>{"protect 127.0.0.1:7200", "unprotect", "failover"}));
}

TEST_F(ControlTest, RefusalsComeBackWithTheNodesReason) {
  node.refusal = "not a primary";
  ControlServer server(path, node);
  for (const json& r : {json{{"cmd", "protect"}, {"peer", "127.0.0.1:7200"}}, json{{"cmd", "unprotect"}},
                        json{{"cmd", "failover"}}}) {
    const json reply = request(r);
    EXPECT_FALSE(reply["ok"].get<bool>()) << reply.dump();
    EXPECT_EQ(reply["error"], "not a primary");
  }
}

TEST_F(ControlTest, BadRequestsAreRefusedWithoutReachingTheNode) {
  ControlServer server(path, node);
  auto error_of = [&](const json& r) {
    const json reply = request(r);
    EXPECT_FALSE(reply["ok"].get<bool>()) << reply.dump();
    return reply.value("error", std::string());
  };
  EXPECT_NE(error_of({{"cmd", "protect"}, {"peer", "localhost:1"}}).find("numeric host"), std::string::npos);
  EXPECT_NE(error_of({{"cmd", "protect"}}).find("peer"), std::string::npos);
  EXPECT_NE(error_of({{"cmd", "protect"}, {"peer", 7}}).find("peer"), std::string::npos);
  EXPECT_NE(error_of({{"cmd", "reboot"}}).find("unknown command \"reboot\""), std::string::npos);
  EXPECT_NE(error_of({{"command", "status"}}).find("cmd"), std::string::npos);
  EXPECT_NE(error_of(json::array({1, 2})).find("JSON object"), std::string::npos);
  std::lock_guard lock(node.mutex);
  EXPECT_TRUE(node.calls.empty());
}

TEST_F(ControlTest, GarbageGetsAnErrorAndTheConnectionStaysUsable) {
  ControlServer server(path, node);
  RawClient client(path);
  client.send("this is not json\n");
  const json first = json::parse(client.read_line());
  EXPECT_FALSE(first["ok"].get<bool>());
  EXPECT_NE(first["error"].get<std::string>().find("not valid JSON"), std::string::npos);
  client.send(std::string("\x00\xff\xfe{{{\n", 7));
  EXPECT_FALSE(json::parse(client.read_line())["ok"].get<bool>());
  client.send("{\"cmd\":\"status\"}\r\n");  // CRLF is tolerated
  EXPECT_TRUE(json::parse(client.read_line())["ok"].get<bool>());
}

TEST_F(ControlTest, PipelinedRequestsAreAnsweredInOrder) {
  ControlServer server(path, node);
  RawClient client(path);
  client.send("{\"cmd\":\"unprotect\"}\n{\"cmd\":\"status\"}\n{\"cmd\":\"failover\"}\n");
  EXPECT_EQ(json::parse(client.read_line()), json({{"ok", true}}));
  EXPECT_TRUE(json::parse(client.read_line()).contains("status"));
  EXPECT_EQ(json::parse(client.read_line()), json({{"ok", true}}));
}

TEST_F(ControlTest, DisconnectMidRequestIsDroppedAndServerKeepsServing) {
  ControlServer server(path, node);
  {
    RawClient client(path);
    client.send("{\"cmd\":\"fail");  // no newline: the request never completes
  }
  {
    RawClient client(path);
    client.send("{\"cmd\":\"status\"}\n");  // and one that leaves before reading its reply
  }
  EXPECT_TRUE(request({{"cmd", "status"}})["ok"].get<bool>());
  std::lock_guard lock(node.mutex);
  EXPECT_TRUE(node.calls.empty());  // the half "failover" never reached the node
}

TEST_F(ControlTest, OversizeLineGetsAnErrorThenTheConnectionCloses) {
  ControlServer server(path, node);
  RawClient client(path);
  std::thread writer([&] {
    boost::system::error_code ec;  // the server may hang up while we still write
    asio::write(client.socket, asio::buffer(std::string(kMaxControlLine + 4096, 'x')), ec);
  });
  const std::string line = client.read_line();
  writer.join();
  ASSERT_FALSE(line.empty());
  const json reply = json::parse(line);
  EXPECT_FALSE(reply["ok"].get<bool>());
  EXPECT_NE(reply["error"].get<std::string>().find("longer than 65536"), std::string::npos) << line;
  EXPECT_TRUE(client.closed_by_server());
  EXPECT_TRUE(request({{"cmd", "status"}})["ok"].get<bool>());
}

TEST_F(ControlTest, LineJustUnderTheCapIsAccepted) {
  ControlServer server(path, node);
  RawClient client(path);
  json r = {{"cmd", "status"}, {"pad", std::string(kMaxControlLine - 64, 'p')}};
  const std::string line = r.dump();
  ASSERT_LT(line.size(), kMaxControlLine);
  client.send(line + "\n");
  EXPECT_TRUE(json::parse(client.read_line())["ok"].get<bool>());
}

TEST_F(ControlTest, HandlerExceptionBecomesAnErrorReply) {
  node.throw_on_status = true;
  ControlServer server(path, node);
  const json reply = request({{"cmd", "status"}});
  EXPECT_FALSE(reply["ok"].get<bool>());
  EXPECT_NE(reply["error"].get<std::string>().find("boom"), std::string::npos);
  node.throw_on_status = false;
  EXPECT_TRUE(request({{"cmd", "status"}})["ok"].get<bool>());
}

TEST_F(ControlTest, ManyConcurrentClientsAllGetAnswers) {
  ControlServer server(path, node);
  std::atomic<int> answered{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < 25; ++i)
        if (request({{"cmd", "status"}})["ok"].get<bool>()) ++answered;
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(answered.load(), 200);
}

TEST_F(ControlTest, SocketIsPrivateAndRemovedOnStop) {
  {
    ControlServer server(path, node);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    server.stop();
    EXPECT_FALSE(fs::exists(path));
    server.stop();  // idempotent
  }
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(ControlTest, StaleSocketIsReplacedLiveOneAndOtherFilesAreNot) {
  {
    // A socket file left behind by a process that died: bound, never unlinked.
    asio::io_context io;
    local::acceptor leftover(io, local::endpoint(path));
  }
  ASSERT_TRUE(fs::exists(path));
  {
    ControlServer server(path, node);
    EXPECT_TRUE(request({{"cmd", "status"}})["ok"].get<bool>());
    try {
      ControlServer second(path, node);
      ADD_FAILURE() << "a second server took over a live socket";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("another process"), std::string::npos) << e.what();
    }
    EXPECT_TRUE(request({{"cmd", "status"}})["ok"].get<bool>());  // the first still serves
  }
  const std::string file = (dir / "plain").string();
  std::ofstream(file) << "precious";
  try {
    ControlServer server(file, node);
    ADD_FAILURE() << "a regular file was replaced";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::is_regular_file(file));
}

TEST_F(ControlTest, MissingDirectoryIsCreated) {
  const std::string nested = (dir / "run" / "tandem" / "n.sock").string();
  ControlServer server(nested, node);
  EXPECT_TRUE(control_request(nested, {{"cmd", "status"}})["ok"].get<bool>());
}

TEST_F(ControlTest, ClientNamesTheSocketWhenNobodyIsThere) {
  try {
    request({{"cmd", "status"}});
    ADD_FAILURE();
  } catch (const ControlUnavailable& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST_F(ControlTest, ClientGivesUpOnASilentServer) {
  asio::io_context io;
  local::acceptor silent(io, local::endpoint(path));  // accepts (backlog) but never answers
  try {
    control_request(path, {{"cmd", "status"}}, std::chrono::milliseconds(200));
    ADD_FAILURE();
  } catch (const ControlUnavailable&) {
    ADD_FAILURE() << "the socket was reachable";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no reply"), std::string::npos) << e.what();
  }
}

TEST(StatusFormat, TextMatchesTheDocumentedLayout) {
  EXPECT_EQ(format_status(example_status()),
            "node a  role primary  state PROTECTED  epoch 3\n"
            "icount 123456789  peer icount 123450000  lag 6789 instr (0.007 ms)\n"
            "log 12.3 KB/s (total 1.2 MB)  last audit @120000000 ok\n"
            "sync: done, 3 rounds, 4.1 MB at 210.3 MB/s\n"
            "console 127.0.0.1:7300  peer 127.0.0.1:7200\n"
            "output console  held 0 B (0 writes)  released 4.2 KB (120 writes)  commit latency p50 85 µs max 410 µs\n"
            "output net      held 1.5 KB (1 frames)  released 2.0 MB (1500 frames)  commit latency p50 120 µs max 900 µs\n");
}

TEST(StatusFormat, FreshNodeAuditMismatchAndErrorsShow) {
  NodeStatus s;
  s.node_name = "b";
  s.role = Role::Secondary;
  s.state = PairState::Standby;
  EXPECT_EQ(format_status(s),
            "node b  role secondary  state STANDBY  epoch 0\n"
            "icount 0  peer icount 0  lag 0 instr (0.000 ms)\n"
            "log 0.0 KB/s (total 0 B)  last audit none\n"
            "sync: none\n"
            "console -  peer -\n");
  s.last_audit_icount = 5000;
  s.last_audit_ok = false;
  s.sync = {2, 2'500'000'000, 99.5, false};
  s.last_error = "audit mismatch at 5000";
  const std::string text = format_status(s);
  EXPECT_NE(text.find("last audit @5000 MISMATCH"), std::string::npos) << text;
  EXPECT_NE(text.find("sync: in progress, round 2, 2.5 GB at 99.5 MB/s"), std::string::npos) << text;
  EXPECT_NE(text.find("error: audit mismatch at 5000\n"), std::string::npos) << text;
}

TEST(StatusJson, WrongTypesAndUnknownNamesAreRefused) {
  json j = status_to_json(example_status());
  EXPECT_EQ(status_from_json(j).icount, 123456789u);
  json wrong = j;
  wrong["icount"] = "many";
  EXPECT_THROW(status_from_json(wrong), std::runtime_error);
  json unknown = j;
  unknown["state"] = "CONFUSED";
  EXPECT_THROW(status_from_json(unknown), std::runtime_error);
  EXPECT_THROW(status_from_json(json::array()), std::runtime_error);
  // Missing fields keep their defaults (an older daemon may send fewer).
  const NodeStatus sparse = status_from_json({{"node", "x"}, {"state", "SYNCING"}});
  EXPECT_EQ(sparse.node_name, "x");
  EXPECT_EQ(sparse.state, PairState::Syncing);
  EXPECT_EQ(sparse.epoch, 0u);
}

TEST(StatusJson, FencingObjectPidAndFencedStateRoundTrip) {
  NodeStatus s = example_status();
  s.state = PairState::Fenced;
  s.pid = 4242;
  s.fencing = {"witness 10.0.0.3:7400", -1, true, "down", "up", true, "renew: refused (holder b, epoch 4)",
               ""};
  const json j = status_to_json(s);
  EXPECT_EQ(j["state"], "FENCED");
  EXPECT_EQ(j["pid"], 4242);
  // The keys the drills and the contract rely on.
  for (const char* key : {"arbiter", "lease_ms_left", "fenced", "link", "heartbeat_path", "degraded"})
    EXPECT_TRUE(j["fencing"].contains(key)) << key;
  EXPECT_EQ(j["fencing"]["ack_ms_left"], -1);
  const NodeStatus back = status_from_json(j);
  EXPECT_EQ(back.state, PairState::Fenced);
  EXPECT_EQ(back.pid, 4242);
  EXPECT_EQ(back.fencing.arbiter, "witness 10.0.0.3:7400");
  EXPECT_EQ(back.fencing.lease_ms_left, -1);
  EXPECT_TRUE(back.fencing.fenced);
  EXPECT_EQ(back.fencing.link, "down");
  EXPECT_EQ(back.fencing.heartbeat_path, "up");
  EXPECT_TRUE(back.fencing.degraded);
  EXPECT_EQ(back.fencing.lease, "renew: refused (holder b, epoch 4)");
  EXPECT_EQ(back.fencing.ack_ms_left, -1);
  NodeStatus on_acks = example_status();
  on_acks.fencing = {"witness 10.0.0.3:7400", 0, false, "up", "up", false, "renew: unreachable", "", 180};
  const NodeStatus on_acks_back = status_from_json(status_to_json(on_acks));
  EXPECT_EQ(on_acks_back.fencing.ack_ms_left, 180);
  EXPECT_NE(format_status(on_acks_back).find("lease 0 ms left, acks 180 ms"), std::string::npos)
      << format_status(on_acks_back);
  const std::string text = format_status(back);
  EXPECT_NE(text.find("state FENCED"), std::string::npos) << text;
  EXPECT_NE(text.find("fencing: witness 10.0.0.3:7400  no lease  FENCED (no output)  link down  heartbeat path up  DEGRADED"),
            std::string::npos)
      << text;
  json bad = j;
  bad["fencing"]["fenced"] = "yes";
  EXPECT_THROW(status_from_json(bad), std::runtime_error);
}

}  // namespace
