// Console ports: the TCP console delivers input, keeps early output for a late client, and
// refuses malformed specs.
#include <gtest/gtest.h>

// Boost 1.74's asio/awaitable.hpp uses std::exchange without including <utility>.
#include <utility>
#include <boost/asio.hpp>

#include <algorithm>
#include <thread>

#include "console/stdio_console.h"
#include "console/tcp_console.h"

namespace tandem::console {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;

std::string read_exactly(tcp::socket& s, size_t n) {
  std::string out(n, '\0');
  asio::read(s, asio::buffer(out));
  return out;
}

TEST(TcpConsole, LateClientSeesEarlierOutputAndItsInputArrives) {
  TcpConsole console("127.0.0.1", 0);
  const std::string banner = "tandem kv ready\n";
  console.write_output({reinterpret_cast<const uint8_t*>(banner.data()), banner.size()});

  asio::io_context io;
  tcp::socket client(io);
  client.connect({asio::ip::make_address("127.0.0.1"), console.port()});
  EXPECT_EQ(read_exactly(client, banner.size()), banner);

  asio::write(client, asio::buffer(std::string("GET k\n")));
  ASSERT_TRUE(console.wait_input(std::chrono::seconds(10)));
  std::vector<uint8_t> in;
  // The bytes may arrive in pieces; collect until the line is complete.
  for (int i = 0; i < 100 && in.size() < 6; ++i) {
    console.read_input(in, 64);
    if (in.size() < 6) console.wait_input(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(std::string(in.begin(), in.end()), "GET k\n");
  EXPECT_FALSE(console.input_closed());
}

TEST(TcpConsole, NewClientReplacesTheOldOne) {
  TcpConsole console("127.0.0.1", 0);
  asio::io_context io;
  tcp::socket first(io), second(io);
  first.connect({asio::ip::make_address("127.0.0.1"), console.port()});
  second.connect({asio::ip::make_address("127.0.0.1"), console.port()});
  for (int i = 0; i < 200 && console.clients_accepted() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(console.clients_accepted(), 2u);
  const std::string line = "OK\n";
  console.write_output({reinterpret_cast<const uint8_t*>(line.data()), line.size()});
  EXPECT_EQ(read_exactly(second, line.size()), line);
  // The first client was closed: its read ends with EOF, not with data.
  boost::system::error_code ec;
  char c;
  first.read_some(asio::buffer(&c, 1), ec);
  EXPECT_TRUE(ec == asio::error::eof || ec == asio::error::connection_reset) << ec.message();
}

// Issue 20: input is bounded. A client sending far more than the guest reads does not grow the
// console's buffer past its bound (the old console buffered all of it); reading stops, TCP
// pushes back, and once the guest reads, every byte arrives, in order, nothing dropped.
TEST(TcpConsole, InputIsBoundedByBackPressureAndNothingIsLost) {
  constexpr size_t kBound = 16 << 10;
  TcpConsole console("127.0.0.1", 0, 1 << 20, kBound);
  asio::io_context io;
  tcp::socket client(io);
  client.connect({asio::ip::make_address("127.0.0.1"), console.port()});
  std::string sent(4 << 20, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + (i * 7 + i / 4096) % 26);
  std::thread writer([&] {
    boost::system::error_code ec;
    asio::write(client, asio::buffer(sent), ec);
  });
  // Wait until the console has stopped reading (its buffer reached the bound).
  for (int i = 0; i < 1000 && console.pending_input() < kBound; ++i) console.wait_input(std::chrono::milliseconds(10));
  ASSERT_GE(console.pending_input(), kBound);
  std::vector<uint8_t> got;
  while (got.size() < sent.size()) {
    EXPECT_LE(console.pending_input(), kBound + 4096) << "the input buffer grew past its bound";
    if (console.read_input(got, 1024) == 0) {
      ASSERT_TRUE(console.wait_input(std::chrono::seconds(10)));
    }
  }
  writer.join();
  EXPECT_TRUE(std::equal(sent.begin(), sent.end(), got.begin())) << "input lost or reordered";
}

// Output is written from the producing thread while nothing waits, and queued for the I/O
// thread when the socket is full: a stream larger than the socket buffer, written in pieces
// of every size while the client reads slowly, arrives whole and in order.
TEST(TcpConsole, StreamLargerThanTheSocketBufferArrivesInOrder) {
  TcpConsole console("127.0.0.1", 0, /*max_pending_output=*/64 << 20);
  asio::io_context io;
  tcp::socket client(io);
  client.connect({asio::ip::make_address("127.0.0.1"), console.port()});
  for (int i = 0; i < 500 && console.clients_accepted() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(console.clients_accepted(), 1u);
  std::string expected;
  for (size_t i = 0; expected.size() < (6u << 20); ++i) expected += std::to_string(i) + ",";
  std::thread writer([&] {
    size_t at = 0;
    for (size_t piece = 1; at < expected.size(); piece = piece * 7 % 9001 + 1) {
      const size_t n = std::min(piece, expected.size() - at);
      console.write_output({reinterpret_cast<const uint8_t*>(expected.data() + at), n});
      at += n;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the socket fill up
  const std::string got = read_exactly(client, expected.size());
  writer.join();
  EXPECT_TRUE(got == expected);
}

TEST(TcpConsole, UnreadOutputIsBoundedKeepingTheNewest) {
  TcpConsole console("127.0.0.1", 0, /*max_pending_output=*/8);
  const std::string text = "0123456789abcdef";
  console.write_output({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  asio::io_context io;
  tcp::socket client(io);
  client.connect({asio::ip::make_address("127.0.0.1"), console.port()});
  EXPECT_EQ(read_exactly(client, 8), "89abcdef");
}

TEST(OpenConsole, MalformedSpecsAreRefusedClearly) {
  EXPECT_THROW(open_console("serial"), std::invalid_argument);
  EXPECT_THROW(open_console("tcp:127.0.0.1"), std::invalid_argument);
  EXPECT_THROW(open_console("tcp:127.0.0.1:port"), std::invalid_argument);
  EXPECT_THROW(open_console("tcp:127.0.0.1:70000"), std::invalid_argument);
  EXPECT_THROW(open_console("tcp:localhost:1234"), std::invalid_argument);
}

}  // namespace
}  // namespace tandem::console
