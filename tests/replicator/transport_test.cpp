// The TCP transport between two well-behaved sides: handshake, ordering, large messages, the
// epoch rule, closing and stopping. Hostile peers are in transport_hostile_test.cpp.
#include <gtest/gtest.h>

#include <random>

#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using namespace testing;

struct Connected {
  std::unique_ptr<Transport> client_transport;
  std::shared_ptr<Link> client;
  std::shared_ptr<Inbox> client_inbox = std::make_shared<Inbox>();
  std::shared_ptr<Link> server;
  std::shared_ptr<Inbox> server_inbox;
};

Connected connect_pair(Server& server, LinkIdentity client_id = identity(wire::PRIMARY, 1)) {
  Connected c;
  size_t index = server.accepted();
  c.client_transport = make_tcp_transport(client_id);
  auto result = connect_and_wait(*c.client_transport, server.port());
  EXPECT_EQ(result.error, "");
  c.client = result.link;
  if (c.client) {
    c.client_inbox->attach(*c.client);
    c.client->start();
  }
  std::tie(c.server, c.server_inbox) = server.link(index);
  return c;
}

TEST(TcpTransport, HandshakeExchangesIdentities) {
  LogCapture log;
  Server server(identity(wire::SECONDARY, 3));
  auto c = connect_pair(server, identity(wire::PRIMARY, 4));
  ASSERT_TRUE(c.client && c.server);
  EXPECT_TRUE(c.client->is_open());
  EXPECT_TRUE(c.server->is_open());
  EXPECT_EQ(c.client->peer().node_name, "node-b");
  EXPECT_EQ(c.client->peer().role, wire::SECONDARY);
  EXPECT_EQ(c.client->peer().epoch, 3u);
  EXPECT_EQ(c.client->peer().address, "127.0.0.1:" + std::to_string(server.port()));
  EXPECT_EQ(c.server->peer().node_name, "node-a");
  EXPECT_EQ(c.server->peer().role, wire::PRIMARY);
  EXPECT_EQ(c.server->peer().epoch, 4u);
  EXPECT_EQ(c.server->peer().address.rfind("127.0.0.1:", 0), 0u);
  EXPECT_EQ(server.transport().stats().links_accepted, 1u);
  EXPECT_EQ(c.client_transport->stats().links_connected, 1u);
  EXPECT_TRUE(log.eventually_contains("authenticated incoming 'node-a' (PRIMARY, epoch 4)"));
}

TEST(TcpTransport, ManyMessagesBothWaysKeepTheirOrder) {
  Server server;
  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  constexpr uint64_t kCount = 20000;
  // Both directions at once, each from its own thread.
  std::thread server_sender([&] {
    for (uint64_t i = 0; i < kCount; ++i) c.server->send(heartbeat(i));
  });
  for (uint64_t i = 0; i < kCount; ++i) c.client->send(heartbeat(i));
  server_sender.join();
  ASSERT_TRUE(c.server_inbox->wait_messages(kCount));
  ASSERT_TRUE(c.client_inbox->wait_messages(kCount));
  auto at_server = c.server_inbox->messages();
  auto at_client = c.client_inbox->messages();
  ASSERT_EQ(at_server.size(), kCount);
  ASSERT_EQ(at_client.size(), kCount);
  for (uint64_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(at_server[i].heartbeat().icount(), i);
    ASSERT_EQ(at_client[i].heartbeat().icount(), i);
  }
  EXPECT_EQ(c.client->stats().messages_sent, kCount);
  EXPECT_EQ(c.server->stats().messages_received, kCount);
  EXPECT_TRUE(eventually([&] { return c.client->queued_bytes() == 0 && c.server->queued_bytes() == 0; }));
}

TEST(TcpTransport, LargeMessagesArriveIntactBetweenSmallOnes) {
  Server server;
  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  std::string checkpoint(6 << 20, '\0');
  std::mt19937_64 random(7);
  for (auto& byte : checkpoint) byte = static_cast<char>(random());
  c.client->send(heartbeat(1));
  wire::Envelope big;
  big.mutable_sync_chunk()->set_checkpoint(checkpoint);
  big.mutable_sync_chunk()->set_round(3);
  c.client->send(big);
  c.client->send(big);
  c.client->send(heartbeat(2));
  ASSERT_TRUE(c.server_inbox->wait_messages(4));
  auto got = c.server_inbox->messages();
  EXPECT_EQ(got[0].heartbeat().icount(), 1u);
  for (int i : {1, 2}) {
    ASSERT_TRUE(got[i].has_sync_chunk());
    EXPECT_EQ(got[i].sync_chunk().round(), 3u);
    EXPECT_TRUE(got[i].sync_chunk().checkpoint() == checkpoint);
  }
  EXPECT_EQ(got[3].heartbeat().icount(), 2u);
}

// send() from a user thread writes to the socket itself when nothing is queued and hands
// the rest to the I/O thread when the socket is full: threads racing with large and small
// messages must still see each of their sequences arrive whole and in order.
TEST(TcpTransport, ConcurrentSendersOfLargeAndSmallMessagesKeepTheirOrder) {
  Server server;
  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  constexpr int kThreads = 3;
  constexpr uint64_t kPerThread = 300;
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      std::mt19937_64 random(t);
      for (uint64_t i = 0; i < kPerThread; ++i) {
        wire::Envelope e;
        // Rounds count per thread; sizes from a few bytes to past a loopback socket buffer.
        e.mutable_sync_chunk()->set_round(static_cast<uint32_t>(t * kPerThread + i));
        const size_t size = i % 50 == 0 ? (3u << 20) : random() % 3000;
        e.mutable_sync_chunk()->set_checkpoint(std::string(size, static_cast<char>('a' + t)));
        c.client->send(std::move(e));
      }
    });
  }
  for (auto& s : senders) s.join();
  ASSERT_TRUE(c.server_inbox->wait_messages(kThreads * kPerThread, std::chrono::seconds(60)));
  std::vector<uint64_t> next(kThreads, 0);
  for (const auto& m : c.server_inbox->messages()) {
    ASSERT_TRUE(m.has_sync_chunk());
    const uint32_t round = m.sync_chunk().round();
    const int t = static_cast<int>(round / kPerThread);
    ASSERT_LT(t, kThreads);
    ASSERT_EQ(round % kPerThread, next[t]) << "thread " << t << " out of order";
    ++next[t];
    const std::string& data = m.sync_chunk().checkpoint();
    ASSERT_EQ(data.find_first_not_of(static_cast<char>('a' + t)), std::string::npos);
  }
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(next[t], kPerThread);
  EXPECT_TRUE(eventually([&] { return c.client->queued_bytes() == 0; }));
}

TEST(TcpTransport, UnsetEpochIsStampedWithTheSendersEpoch) {
  Server server(identity(wire::SECONDARY, 2));
  auto c = connect_pair(server, identity(wire::PRIMARY, 9));
  ASSERT_TRUE(c.client && c.server);
  c.client->send(heartbeat(1));      // epoch 0: stamped 9
  c.client->send(heartbeat(2, 12));  // explicit: kept
  c.server->send(heartbeat(3));      // stamped 2
  ASSERT_TRUE(c.server_inbox->wait_messages(2));
  ASSERT_TRUE(c.client_inbox->wait_messages(1));
  EXPECT_EQ(c.server_inbox->messages()[0].epoch(), 9u);
  EXPECT_EQ(c.server_inbox->messages()[1].epoch(), 12u);
  EXPECT_EQ(c.client_inbox->messages()[0].epoch(), 2u);
}

TEST(TcpTransport, StaleEpochMessagesAreDroppedAndCounted) {
  LogCapture log;
  Server server;
  auto c = connect_pair(server, identity(wire::PRIMARY, 5));
  ASSERT_TRUE(c.client && c.server);
  c.client->send(heartbeat(1, 4));  // older than the handshake epoch: dropped
  c.client->send(heartbeat(2, 5));
  c.client->send(heartbeat(3, 7));  // a newer epoch raises the floor...
  c.client->send(heartbeat(4, 6));  // ...so this one is stale too
  c.client->send(heartbeat(5, 7));
  ASSERT_TRUE(c.server_inbox->wait_messages(3));
  // The marker after the drops arrived, so the drops have been decided.
  auto got = c.server_inbox->messages();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].heartbeat().icount(), 2u);
  EXPECT_EQ(got[1].heartbeat().icount(), 3u);
  EXPECT_EQ(got[2].heartbeat().icount(), 5u);
  EXPECT_EQ(c.server->stats().stale_epoch_dropped, 2u);
  EXPECT_TRUE(c.server->is_open());
  EXPECT_TRUE(log.eventually_contains("stale epoch: dropped Heartbeat of epoch 4"));
}

TEST(TcpTransport, CloseFiresEachSidesCallbackOnce) {
  Server server;
  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  c.client->close("test is done");
  c.client->close("again");  // idempotent
  EXPECT_FALSE(c.client->is_open());
  ASSERT_TRUE(c.client_inbox->wait_closed());
  ASSERT_TRUE(c.server_inbox->wait_closed());
  c.client->send(heartbeat(1));  // after close: dropped, no crash
  c.client->close("and again");
  std::this_thread::sleep_for(100ms);  // a second callback would have had time to show up
  ASSERT_EQ(c.client_inbox->close_reasons().size(), 1u);
  EXPECT_EQ(c.client_inbox->close_reasons()[0], "test is done");
  ASSERT_EQ(c.server_inbox->close_reasons().size(), 1u);
  EXPECT_EQ(c.server_inbox->close_reasons()[0], "peer closed the connection");
  EXPECT_FALSE(c.server->is_open());
}

TEST(TcpTransport, CloseFlushesWhatWasAlreadySent) {
  Server server;
  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  for (uint64_t i = 0; i < 1000; ++i) c.client->send(heartbeat(i));
  c.client->close("handover");
  ASSERT_TRUE(c.server_inbox->wait_closed());
  EXPECT_EQ(c.server_inbox->messages().size(), 1000u);
}

TEST(TcpTransport, StopClosesLinksThatMayOutliveTheTransport) {
  Server server;
  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  c.client_transport->stop();
  c.client_transport->stop();  // idempotent
  ASSERT_TRUE(c.client_inbox->wait_closed());
  EXPECT_EQ(c.client_inbox->close_reasons()[0], "transport stopped");
  ASSERT_TRUE(c.server_inbox->wait_closed());
  c.client_transport.reset();
  // The link is still a valid object, closed and inert.
  EXPECT_FALSE(c.client->is_open());
  c.client->send(heartbeat(1));
  c.client->close("late");
  c.client->start();
  EXPECT_EQ(c.client_inbox->close_reasons().size(), 1u);
}

TEST(TcpTransport, MessagesSentBeforeStartAreDeliveredAfterIt) {
  Server server;
  auto client_transport = make_tcp_transport(identity(wire::PRIMARY));
  auto result = connect_and_wait(*client_transport, server.port());
  ASSERT_TRUE(result.link) << result.error;
  auto [server_link, server_inbox] = server.link();
  ASSERT_TRUE(server_link);
  for (uint64_t i = 0; i < 10; ++i) server_link->send(heartbeat(i));
  std::this_thread::sleep_for(100ms);  // the messages are waiting on the client's socket
  auto inbox = std::make_shared<Inbox>();
  inbox->attach(*result.link);
  result.link->start();
  ASSERT_TRUE(inbox->wait_messages(10));
  EXPECT_EQ(inbox->messages()[9].heartbeat().icount(), 9u);
}

TEST(TcpTransport, WrongPskIsRefusedAndTheListenerKeepsAccepting) {
  LogCapture log;
  Server server;
  auto intruder = make_tcp_transport(identity(wire::PRIMARY, 1, "a-different-key-of-sufficient-length"));
  auto refused = connect_and_wait(*intruder, server.port());
  EXPECT_EQ(refused.link, nullptr);
  EXPECT_NE(refused.error.find("wrong PSK"), std::string::npos) << refused.error;
  EXPECT_TRUE(log.eventually_contains("wrong PSK"));
  EXPECT_TRUE(eventually([&] { return server.transport().stats().handshakes_refused == 1; }));
  EXPECT_EQ(server.accepted(), 0u);

  auto c = connect_pair(server);
  ASSERT_TRUE(c.client && c.server);
  c.client->send(heartbeat(42));
  ASSERT_TRUE(c.server_inbox->wait_messages(1));
}

TEST(TcpTransport, VmIdMismatchIsRefused) {
  LogCapture log;
  Server server;
  auto other = make_tcp_transport(identity(wire::PRIMARY, 1, kPsk, "another-vm"));
  auto refused = connect_and_wait(*other, server.port());
  EXPECT_EQ(refused.link, nullptr);
  EXPECT_NE(refused.error.find("vm_id mismatch"), std::string::npos) << refused.error;
  EXPECT_TRUE(log.eventually_contains("vm_id mismatch"));
  EXPECT_EQ(server.accepted(), 0u);
}

TEST(TcpTransport, ConnectingToNothingReportsAnError) {
  uint16_t unused_port;
  {
    RawListener probe;  // a port that was free a moment ago and is closed now
    unused_port = probe.port();
  }
  auto transport = make_tcp_transport(identity(wire::PRIMARY));
  auto result = connect_and_wait(*transport, unused_port);
  EXPECT_EQ(result.link, nullptr);
  EXPECT_NE(result.error.find("cannot connect"), std::string::npos) << result.error;
}

TEST(TcpTransport, IdentitiesThatCannotBeSecureAreRejected) {
  EXPECT_THROW(make_tcp_transport(identity(wire::PRIMARY, 1, "short")), std::invalid_argument);
  EXPECT_THROW(make_tcp_transport(identity(wire::PRIMARY, 1, kPsk, "")), std::invalid_argument);
}

TEST(TcpTransport, ListeningTwiceOrOnABadAddressThrows) {
  Server server;
  EXPECT_THROW(server.transport().listen("127.0.0.1", 0, [](std::shared_ptr<Link>) {}), std::logic_error);
  auto transport = make_tcp_transport(identity(wire::SECONDARY));
  EXPECT_THROW(transport->listen("127.0.0.1", server.port(), [](std::shared_ptr<Link>) {}), std::system_error);
}

TEST(TcpTransport, AThrowingHandlerClosesTheLink) {
  Server server;
  auto client_transport = make_tcp_transport(identity(wire::PRIMARY));
  auto result = connect_and_wait(*client_transport, server.port());
  ASSERT_TRUE(result.link);
  auto inbox = std::make_shared<Inbox>();
  inbox->attach(*result.link);
  result.link->on_message = [](wire::Envelope&&) { throw std::runtime_error("cannot handle this"); };
  result.link->start();
  auto [server_link, server_inbox] = server.link();
  server_link->send(heartbeat(1));
  ASSERT_TRUE(inbox->wait_closed());
  EXPECT_NE(inbox->close_reasons()[0].find("cannot handle this"), std::string::npos);
  EXPECT_TRUE(server_inbox->wait_closed());
}

TEST(TcpTransport, SendBacklogOverTheLimitClosesTheLink) {
  Server server;
  TransportOptions options;
  options.max_queued_bytes = 64 * 1024;
  auto client_transport = make_tcp_transport(identity(wire::PRIMARY), options);
  auto result = connect_and_wait(*client_transport, server.port());
  ASSERT_TRUE(result.link);
  auto inbox = std::make_shared<Inbox>();
  inbox->attach(*result.link);
  result.link->start();
  wire::Envelope big;
  big.mutable_sync_chunk()->set_checkpoint(std::string(128 * 1024, 'x'));
  result.link->send(big);
  ASSERT_TRUE(inbox->wait_closed());
  EXPECT_NE(inbox->close_reasons()[0].find("send backlog"), std::string::npos);
}

}  // namespace
}  // namespace tandem::replicator
