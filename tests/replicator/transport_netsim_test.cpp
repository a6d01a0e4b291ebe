// The link through netsim, the fault proxy: bit flips on the TCP stream are caught by the
// frame checksum (the link closes, naming the bad frame) and no corrupted message is ever
// delivered; a reset connection closes both ends cleanly.
#include <gtest/gtest.h>

#include "netsim/simulator.h"
#include "tests/replicator/transport_helpers.h"

namespace tandem::replicator {
namespace {

using namespace testing;

struct ThroughProxy {
  Server server;
  netsim::Simulator sim{make_options()};
  static netsim::SimulatorOptions make_options() {
    netsim::SimulatorOptions o;
    o.seed = 11;
    return o;
  }
  std::unique_ptr<Transport> client_transport = make_tcp_transport(identity(wire::PRIMARY));
  std::shared_ptr<Link> client;
  std::shared_ptr<Inbox> client_inbox = std::make_shared<Inbox>();

  bool connect() {
    netsim::LinkConfig repl;
    repl.name = "repl";
    repl.target_port = server.port();
    uint16_t proxy_port = sim.add_link(repl);
    auto result = connect_and_wait(*client_transport, proxy_port);
    if (!result.link) return false;
    client = result.link;
    client_inbox->attach(*client);
    client->start();
    return true;
  }
  ~ThroughProxy() { client_transport->stop(); }
};

TEST(TransportThroughNetsim, FlippedBitsCloseTheLinkAndAreNeverDelivered) {
  ThroughProxy p;
  ASSERT_TRUE(p.connect());
  auto [server_link, server_inbox] = p.server.link();
  ASSERT_TRUE(server_link);
  p.sim.set_fault("repl", netsim::fault("corrupt", netsim::Direction::Up, {{"probability", "0.001"}}));
  // Keep sending until the corruption is noticed: a flip in a length field can make the
  // receiver wait for a longer frame first.
  uint64_t sent = 0;
  auto deadline = std::chrono::steady_clock::now() + 30s;
  while (!server_inbox->wait_closed(1ms) && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 1000; ++i) p.client->send(heartbeat(sent++));
  }
  ASSERT_TRUE(server_inbox->wait_closed());
  EXPECT_EQ(server_inbox->close_reasons()[0].rfind("bad frame from ", 0), 0u) << server_inbox->close_reasons()[0];
  EXPECT_GT(p.sim.stats("repl").up.corrupted, 0u);
  // Everything delivered is exactly what was sent, in order, up to the first bad frame.
  auto delivered = server_inbox->messages();
  for (size_t i = 0; i < delivered.size(); ++i) {
    ASSERT_TRUE(delivered[i].has_heartbeat()) << i;
    ASSERT_EQ(delivered[i].heartbeat().icount(), i);
  }
  EXPECT_TRUE(p.client_inbox->wait_closed());
}

TEST(TransportThroughNetsim, ResetConnectionClosesBothEnds) {
  ThroughProxy p;
  ASSERT_TRUE(p.connect());
  auto [server_link, server_inbox] = p.server.link();
  ASSERT_TRUE(server_link);
  p.client->send(heartbeat(1));
  ASSERT_TRUE(server_inbox->wait_messages(1));
  p.sim.reset_connections("repl");
  EXPECT_TRUE(server_inbox->wait_closed());
  EXPECT_TRUE(p.client_inbox->wait_closed());
  EXPECT_EQ(p.client_inbox->close_reasons().size(), 1u);
}

}  // namespace
}  // namespace tandem::replicator
