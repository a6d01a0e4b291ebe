// An attacker in the middle of an established link (issue 20, finding 2), on real TCP on
// 127.0.0.1: the primary connects to a relay that forwards every frame to the secondary and
// back and can drop, duplicate, swap, rewrite or inject frames. Before version 4 the frames
// after the handshake carried an XXH3 checksum only, which anyone can recompute: an injected
// Ack{received_icount = UINT64_MAX} released output that was never replicated, a replayed
// frame was delivered twice. Now every frame is sealed (auth.h): each of these closes the link
// with "failed authentication" and nothing forged is delivered.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <limits>

#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using namespace testing;
using tcp = boost::asio::ip::tcp;

enum class Way { kToSecondary = 0, kToPrimary = 1 };

// Forwards frames between one accepted connection and the real listener. A frame is handed to
// `tamper` (its way, its index in that way counting from 0, its payload) which returns the
// payloads to forward in its place (the payload itself when untouched). The handshake is 2
// frames toward the secondary (Hello, AuthProof) and 1 toward the primary (HelloReply).
class MitmRelay {
 public:
  using Tamper = std::function<std::vector<std::string>(Way, size_t index, const std::string& payload)>;

  MitmRelay(uint16_t target_port, Tamper tamper) : acceptor_(io_), tamper_(std::move(tamper)) {
    acceptor_.open(tcp::v4());
    acceptor_.bind({boost::asio::ip::make_address("127.0.0.1"), 0});
    acceptor_.listen();
    thread_ = std::thread([this, target_port] { run(target_port); });
  }
  ~MitmRelay() {
    stop_ = true;
    thread_.join();
  }
  uint16_t port() const { return acceptor_.local_endpoint().port(); }

  // Writes a frame of `payload` (checksum right) toward `way`, as if the real peer sent it.
  void inject(Way way, const std::string& payload) {
    std::lock_guard lock(inject_mutex_);
    injections_.emplace_back(way, payload);
  }
  size_t frames(Way way) const { return counts_[static_cast<int>(way)].load(); }

 private:
  void run(uint16_t target_port) {
    const int listen_fd = acceptor_.native_handle();
    pollfd accept_poll{listen_fd, POLLIN, 0};
    while (!stop_ && ::poll(&accept_poll, 1, 20) <= 0) {
    }
    if (stop_) return;
    tcp::socket primary(io_), secondary(io_);
    boost::system::error_code ec;
    acceptor_.accept(primary, ec);
    if (ec) return;
    secondary.connect({boost::asio::ip::make_address("127.0.0.1"), target_port}, ec);
    if (ec) return;
    tcp::socket* from[2] = {&primary, &secondary};  // indexed by Way: kToSecondary reads the primary
    tcp::socket* to[2] = {&secondary, &primary};
    FrameReader readers[2];
    while (!stop_) {
      {
        std::lock_guard lock(inject_mutex_);
        for (auto& [way, payload] : injections_) write(*to[static_cast<int>(way)], raw_frame(payload));
        injections_.clear();
      }
      pollfd fds[2] = {{primary.native_handle(), POLLIN, 0}, {secondary.native_handle(), POLLIN, 0}};
      if (::poll(fds, 2, 10) <= 0) continue;
      for (int w = 0; w < 2; ++w) {
        if (!(fds[w].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto area = readers[w].write_area(4096);
        const ssize_t n = ::read(from[w]->native_handle(), area.data(), area.size());
        if (n <= 0) return;  // one side closed: drop both (the sockets close on return)
        readers[w].commit(static_cast<size_t>(n));
        std::string_view payload;
        std::string error;
        while (readers[w].next(payload, error) == FrameReader::Status::kFrame) {
          const size_t index = counts_[w]++;
          for (const auto& out : tamper_(static_cast<Way>(w), index, std::string(payload))) {
            write(*to[w], raw_frame(out));
          }
        }
      }
    }
  }
  static void write(tcp::socket& socket, const std::string& bytes) {
    boost::system::error_code ignored;
    boost::asio::write(socket, boost::asio::buffer(bytes), ignored);
  }

  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  Tamper tamper_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::mutex inject_mutex_;
  std::vector<std::pair<Way, std::string>> injections_;
  std::atomic<size_t> counts_[2] = {0, 0};
};

std::vector<std::string> untouched(Way, size_t, const std::string& payload) { return {payload}; }

// The primary's link through the relay, started, and the secondary's.
struct Pair {
  std::unique_ptr<Transport> primary = make_tcp_transport(identity(wire::PRIMARY));
  Server secondary;
  std::unique_ptr<MitmRelay> relay;
  std::shared_ptr<Link> primary_link, secondary_link;
  std::shared_ptr<Inbox> primary_inbox = std::make_shared<Inbox>(), secondary_inbox;

  explicit Pair(MitmRelay::Tamper tamper) {
    relay = std::make_unique<MitmRelay>(secondary.port(), std::move(tamper));
    auto result = connect_and_wait(*primary, relay->port());
    if (!result.link) {
      ADD_FAILURE() << "connect through the relay failed: " << result.error;
      return;
    }
    primary_link = result.link;
    primary_inbox->attach(*primary_link);
    primary_link->start();
    std::tie(secondary_link, secondary_inbox) = secondary.link(0);
    if (!secondary_link) ADD_FAILURE() << "the secondary never saw the link";
  }
  ~Pair() {
    primary->stop();
    relay.reset();
  }
};

wire::Envelope ack(uint64_t received_icount) {
  wire::Envelope envelope;
  envelope.set_epoch(1);
  envelope.mutable_ack()->set_received_icount(received_icount);
  return envelope;
}

bool has_ack(const std::vector<wire::Envelope>& messages, uint64_t icount) {
  for (const auto& m : messages) {
    if (m.has_ack() && m.ack().received_icount() == icount) return true;
  }
  return false;
}

const char kRefusal[] = "failed authentication (forged, altered, replayed, reordered or injected)";

TEST(LinkTamper, UntouchedTrafficFlowsThroughTheRelay) {
  Pair pair(untouched);
  ASSERT_TRUE(pair.primary_link && pair.secondary_link);
  pair.primary_link->send(heartbeat(5));
  pair.secondary_link->send(ack(5));
  ASSERT_TRUE(pair.secondary_inbox->wait_messages(1));
  ASSERT_TRUE(pair.primary_inbox->wait_messages(1));
  EXPECT_EQ(pair.secondary_inbox->messages()[0].heartbeat().icount(), 5u);
  EXPECT_TRUE(has_ack(pair.primary_inbox->messages(), 5));
}

// Finding 2's own example: an Ack the secondary never sent would release every output held.
TEST(LinkTamper, InjectedAckIsRefusedAndClosesTheLink) {
  LogCapture log;
  Pair pair(untouched);
  ASSERT_TRUE(pair.primary_link && pair.secondary_link);
  pair.secondary_link->send(ack(10));  // a genuine one first: the link is established and used
  ASSERT_TRUE(pair.primary_inbox->wait_messages(1));
  const uint64_t forged = std::numeric_limits<uint64_t>::max();
  pair.relay->inject(Way::kToPrimary, ack(forged).SerializeAsString());
  ASSERT_TRUE(pair.primary_inbox->wait_closed());
  EXPECT_NE(pair.primary_inbox->close_reasons()[0].find(kRefusal), std::string::npos)
      << pair.primary_inbox->close_reasons()[0];
  EXPECT_FALSE(has_ack(pair.primary_inbox->messages(), forged)) << "the forged Ack was delivered";
  EXPECT_EQ(pair.primary_inbox->messages().size(), 1u);
}

// A copy of a frame the primary really sent (a log batch delivered twice would be applied twice).
TEST(LinkTamper, ReplayedFrameIsRefused) {
  Pair pair([](Way way, size_t index, const std::string& payload) -> std::vector<std::string> {
    if (way == Way::kToSecondary && index == 2) return {payload, payload};  // the first after the handshake
    return {payload};
  });
  ASSERT_TRUE(pair.primary_link && pair.secondary_link);
  pair.primary_link->send(heartbeat(1));
  ASSERT_TRUE(pair.secondary_inbox->wait_closed());
  EXPECT_NE(pair.secondary_inbox->close_reasons()[0].find("frame 1 "), std::string::npos)
      << pair.secondary_inbox->close_reasons()[0];
  EXPECT_NE(pair.secondary_inbox->close_reasons()[0].find(kRefusal), std::string::npos);
  EXPECT_EQ(pair.secondary_inbox->messages().size(), 1u) << "the replayed copy was delivered";
}

TEST(LinkTamper, ReorderedFramesAreRefused) {
  std::string held;
  Pair pair([&held](Way way, size_t index, const std::string& payload) -> std::vector<std::string> {
    if (way != Way::kToSecondary || index < 2 || index > 3) return {payload};
    if (index == 2) {
      held = payload;
      return {};
    }
    return {payload, held};  // the second before the first
  });
  ASSERT_TRUE(pair.primary_link && pair.secondary_link);
  pair.primary_link->send(heartbeat(1));
  pair.primary_link->send(heartbeat(2));
  ASSERT_TRUE(pair.secondary_inbox->wait_closed());
  EXPECT_NE(pair.secondary_inbox->close_reasons()[0].find(kRefusal), std::string::npos);
  EXPECT_TRUE(pair.secondary_inbox->messages().empty());
}

// One bit of a real frame flipped and its XXH3 recomputed, so the frame layer accepts it.
TEST(LinkTamper, AlteredFrameWithAValidChecksumIsRefused) {
  Pair pair([](Way way, size_t index, const std::string& payload) -> std::vector<std::string> {
    if (way != Way::kToPrimary || index != 1) return {payload};
    std::string altered = payload;
    altered[altered.size() / 2] ^= 0x04;
    return {altered};
  });
  ASSERT_TRUE(pair.primary_link && pair.secondary_link);
  pair.secondary_link->send(ack(123456));
  ASSERT_TRUE(pair.primary_inbox->wait_closed());
  EXPECT_NE(pair.primary_inbox->close_reasons()[0].find(kRefusal), std::string::npos);
  EXPECT_TRUE(pair.primary_inbox->messages().empty());
}

// Neither the guest's memory nor its console input crosses in cleartext.
TEST(LinkTamper, PayloadIsNotReadableOnTheWire) {
  std::mutex mutex;
  std::string seen;
  Pair pair([&](Way way, size_t index, const std::string& payload) -> std::vector<std::string> {
    if (way == Way::kToSecondary && index >= 2) {
      std::lock_guard lock(mutex);
      seen += payload;
    }
    return {payload};
  });
  ASSERT_TRUE(pair.primary_link && pair.secondary_link);
  const std::string secret = "console input: the root password is hunter2";
  wire::Envelope envelope;
  envelope.set_epoch(1);
  envelope.mutable_refused()->set_reason(secret);  // any body with bytes in it
  pair.primary_link->send(envelope);
  ASSERT_TRUE(pair.secondary_inbox->wait_closed());  // a Refused after authentication closes the link
  std::lock_guard lock(mutex);
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(seen.find("hunter2"), std::string::npos) << "the payload crossed in cleartext";
}

}  // namespace
}  // namespace tandem::replicator
