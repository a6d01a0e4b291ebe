// The JSON-lines Unix-socket server and client on real sockets: round trips, bad lines,
// oversize lines, the client limit, an idle client, stale and live socket files, a server
// on the caller's io_context, and the client's errors.
#include "net/json_lines.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <boost/asio/post.hpp>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

namespace {

namespace fs = std::filesystem;
using namespace tandem::net;
using nlohmann::json;
using namespace std::chrono_literals;

json echo(const json& request) {
  if (request.is_object() && request.value("cmd", "") == "boom") throw std::runtime_error("boom");
  return {{"ok", true}, {"echo", request}};
}

// A raw client: connect, send, read one line.
class RawClient {
 public:
  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  void send(const std::string& bytes) { ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }
  // The next line without its '\n'; "" on EOF.
  std::string line() {
    std::string out;
    char c;
    while (::recv(fd_, &c, 1, 0) == 1) {
      if (c == '\n') return out;
      out += c;
    }
    return "";
  }
  bool closed_by_server() {
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);  // reset: it closed with our bytes unread
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

class JsonLinesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("tandem-jl-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    path = (dir / "c.sock").string();
  }
  void TearDown() override { fs::remove_all(dir); }
  fs::path dir;
  std::string path;
};

TEST_F(JsonLinesTest, RequestsGetRepliesAndTheSocketIsPrivate) {
  JsonLinesServer server(path, echo);
  const json reply = json_lines_request(path, {{"cmd", "status"}, {"n", 3}});
  EXPECT_TRUE(reply["ok"].get<bool>());
  EXPECT_EQ(reply["echo"]["n"], 3);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  server.stop();
  EXPECT_FALSE(fs::exists(path)) << "stop() removes the socket file";
  server.stop();  // idempotent
}

TEST_F(JsonLinesTest, BadLinesAreAnsweredAndTheConnectionStays) {
  JsonLinesServer server(path, echo);
  RawClient c(path);
  ASSERT_TRUE(c.connected());
  c.send("{not json\n");
  const json first = json::parse(c.line());
  EXPECT_FALSE(first["ok"].get<bool>());
  EXPECT_NE(first["error"].get<std::string>().find("not valid JSON"), std::string::npos);
  c.send("{\"cmd\":\"boom\"}\r\n");
  const json second = json::parse(c.line());
  EXPECT_NE(second["error"].get<std::string>().find("internal error: boom"), std::string::npos);
  c.send("\n{\"cmd\":\"x\"}\n");  // an empty line is skipped
  EXPECT_TRUE(json::parse(c.line())["ok"].get<bool>());
}

TEST_F(JsonLinesTest, AnOversizeLineIsAnsweredThenClosed) {
  JsonLinesServer server(path, echo, {.max_line = 100});
  RawClient c(path);
  c.send(std::string(101, 'x') + "\n");
  const json reply = json::parse(c.line());
  EXPECT_NE(reply["error"].get<std::string>().find("longer than 100 bytes"), std::string::npos);
  EXPECT_TRUE(c.closed_by_server());
  RawClient exact(path);
  exact.send("\"" + std::string(98, 'y') + "\"\n");  // exactly 100 bytes: served
  EXPECT_TRUE(json::parse(exact.line()).contains("echo"));
}

TEST_F(JsonLinesTest, ClientsOverTheLimitAreTurnedAwayAndIdleOnesDropped) {
  JsonLinesServer server(path, echo, {.idle_timeout = 2s, .max_clients = 1, .name = "test"});
  RawClient first(path);
  first.send("{}\n");
  ASSERT_FALSE(first.line().empty());
  RawClient second(path);
  const std::string busy = second.line();
  EXPECT_NE(busy.find("too many test clients"), std::string::npos) << busy;
  EXPECT_TRUE(first.closed_by_server()) << "an idle client is disconnected";
  // Its slot is free again (retry: the server frees it as the idle close completes).
  json reply;
  for (int i = 0; i < 100 && !reply.contains("echo"); ++i) {
    reply = json_lines_request(path, {{"cmd", "again"}});
    if (!reply.contains("echo")) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(reply.contains("echo")) << reply.dump();
}

TEST_F(JsonLinesTest, StaleSocketIsReplacedLiveOneAndOtherFilesRefused) {
  {
    JsonLinesServer live(path, echo);
    try {
      JsonLinesServer second(path, echo);
      FAIL() << "a second server on a live socket";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("another process"), std::string::npos) << e.what();
    }
  }
  // A socket file nobody serves (a crashed server).
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ::close(fd);
  JsonLinesServer replaced(path, echo);
  EXPECT_TRUE(json_lines_request(path, {})["ok"].get<bool>());
  replaced.stop();
  std::ofstream(path) << "not a socket";
  try {
    JsonLinesServer refused(path, echo);
    FAIL() << "a regular file replaced";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a socket"), std::string::npos) << e.what();
  }
  const std::string nested = (dir / "a" / "b" / "c.sock").string();
  JsonLinesServer in_new_dir(nested, echo);
  EXPECT_TRUE(json_lines_request(nested, {})["ok"].get<bool>());
}

TEST_F(JsonLinesTest, ServesOnTheCallersIoContext) {
  boost::asio::io_context io;
  std::thread::id handler_thread;
  auto server = std::make_unique<JsonLinesServer>(io, path, [&](const json& r) {
    handler_thread = std::this_thread::get_id();
    return echo(r);
  });
  auto guard = boost::asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  EXPECT_TRUE(json_lines_request(path, {{"cmd", "x"}})["ok"].get<bool>());
  EXPECT_EQ(handler_thread, runner.get_id());
  std::promise<void> stopped;
  boost::asio::post(io, [&] {
    server->stop();
    stopped.set_value();
  });
  stopped.get_future().wait();
  guard.reset();
  runner.join();  // every coroutine finished: run() returned
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(JsonLinesTest, ClientErrors) {
  try {
    json_lines_request(path, {}, 1s, " (is it running?)");
    FAIL() << "expected Unreachable";
  } catch (const Unreachable& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("cannot reach control socket " + path), std::string::npos) << what;
    EXPECT_NE(what.find("(is it running?)"), std::string::npos) << what;
  }
  // A server that never answers, one that answers garbage.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  try {
    json_lines_request(path, {}, 200ms);
    FAIL() << "expected no reply";
  } catch (const Unreachable&) {
    FAIL() << "connected, so not Unreachable";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no reply within 200 ms"), std::string::npos) << e.what();
  }
  // The first, unanswered connection is still in the backlog: take it out first.
  const int stale = ::accept(fd, nullptr, nullptr);
  ::close(stale);
  std::thread garbage([&] {
    const int c = ::accept(fd, nullptr, nullptr);
    char buffer[256];
    (void)::recv(c, buffer, sizeof buffer, 0);
    (void)::send(c, "[1]\n", 4, MSG_NOSIGNAL);
    ::close(c);
  });
  try {
    json_lines_request(path, {}, 5s);
    FAIL() << "expected a malformed reply";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("malformed reply"), std::string::npos) << e.what();
  }
  garbage.join();
  ::close(fd);
}

}  // namespace
