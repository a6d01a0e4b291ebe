// Scenarios replay exactly; partitions over node sets cut the right links in one step; the
// event log is JSON lines with timestamps.
#include <gtest/gtest.h>

#include <fstream>

#include "netsim/scenario.h"
#include "netsim/simulator.h"
#include "peers.h"

namespace netsim {
namespace {

using namespace std::chrono_literals;
using namespace netsim::test;

// A timeline with random faults switched on at start, a time-triggered change at 300 ms and
// a message-triggered fault. The test sends its traffic in two phases, each after the steps
// it belongs to have been applied, so the outcome depends only on the seed.
constexpr const char* kReplayScenario = R"(
seed = 2024
[[step]]
at = "0s"
link = "u"
fault = "loss"
direction = "up"
probability = 0.3
[[step]]
at = "0s"
link = "u"
fault = "duplicate"
direction = "down"
probability = 0.2
[[step]]
at = "0s"
link = "u"
fault = "corrupt"
direction = "up"
probability = 0.5
after_messages = 600
[[step]]
at = "300ms"
action = "clear"
link = "u"
fault = "loss"
[[step]]
at = "300ms"
link = "u"
fault = "burst_loss"
direction = "down"
p = 0.1
r = 0.3
)";

LinkStats replay_once() {
  UdpServer echo(true);
  Simulator sim(SimulatorOptions{1, ""});  // the scenario's seed replaces this one
  const uint16_t port = sim.add_link(udp_link("u", echo.port()));
  auto run = sim.run_scenario(parse_scenario(kReplayScenario));
  Fd client = udp_socket();
  EXPECT_TRUE(run->wait_for_steps(3, 10s));
  for (uint32_t i = 0; i < 500; ++i) {
    const uint32_t seq = i;
    udp_send(client.get(), port, &seq, sizeof seq);
    if (i % 10 == 9) std::this_thread::sleep_for(1ms);  // no kernel buffer overflows
  }
  echo.settle();
  EXPECT_TRUE(run->wait(10s));
  for (uint32_t i = 500; i < 1000; ++i) {
    const uint32_t seq = i;
    udp_send(client.get(), port, &seq, sizeof seq);
    if (i % 10 == 9) std::this_thread::sleep_for(1ms);  // no kernel buffer overflows
  }
  echo.settle();
  // Let the replies reach the client side too.
  eventually([&] {
    const auto s = sim.stats("u");
    return s.down.packets_in + s.down.duplicated == s.down.packets_out + s.down.dropped_packets + s.down.send_errors;
  });
  std::this_thread::sleep_for(100ms);
  return sim.stats("u");
}

TEST(Scenario, SameSeedSameTimelineSameCounters) {
  const LinkStats a = replay_once();
  const LinkStats b = replay_once();
  EXPECT_EQ(to_json(a.up), to_json(b.up));
  EXPECT_EQ(to_json(a.down), to_json(b.down));
  // And the faults did something in every phase.
  EXPECT_GT(a.up.dropped_packets, 0u);
  EXPECT_GT(a.up.corrupted, 0u);
  EXPECT_GT(a.down.duplicated, 0u);
  EXPECT_GT(a.down.dropped_packets, 0u);
}

TEST(Scenario, StepsHappenAtTheirTimes) {
  TcpServer echo(echo_handler);
  Simulator sim(SimulatorOptions{1, ""});
  sim.add_link(tcp_link("repl", echo.port()));
  auto run = sim.run_scenario(parse_scenario(R"(
[[step]]
at = "200ms"
link = "repl"
fault = "partition"
for = "200ms"
)"));
  ASSERT_TRUE(run->wait(10s));
  ASSERT_TRUE(eventually([&] { return sim.stats("repl").faults.empty(); }));
  double set_at = -1, cleared_at = -1, start_at = -1;
  for (const auto& e : sim.events().recent()) {
    if (e["event"] == "scenario_start") start_at = e["t"];
    if (e["event"] == "fault_active") set_at = e["t"];
    if (e["event"] == "fault_cleared") cleared_at = e["t"];
  }
  ASSERT_GE(start_at, 0);
  EXPECT_GE(set_at - start_at, 0.2 - 0.001);
  EXPECT_LT(set_at - start_at, 0.2 + 0.5);
  EXPECT_GE(cleared_at - set_at, 0.2 - 0.001);
}

TEST(Scenario, UnknownLinkRefusesTheWholeScenario) {
  Simulator sim(SimulatorOptions{1, ""});
  EXPECT_THROW(sim.run_scenario(parse_scenario("[[step]]\nat = \"0s\"\nlink = \"nope\"\nfault = \"stall\"\n")),
               std::invalid_argument);
}

class Partitions : public ::testing::Test {
 protected:
  void SetUp() override {
    // primary <-> secondary (replication), primary -> witness, secondary -> witness.
    add("repl", "primary", "secondary");
    add("p_witness", "primary", "witness");
    add("s_witness", "secondary", "witness");
  }
  void add(const std::string& name, const std::string& from, const std::string& to) {
    LinkConfig c = tcp_link(name, echo_.port());
    c.from_node = from;
    c.to_node = to;
    sim_.add_link(c);
  }
  std::map<std::string, Direction> cut(const PartitionSpec& spec) {
    std::map<std::string, Direction> out;
    for (auto& [link, direction] : sim_.partition(spec)) out[link] = direction;
    return out;
  }

  TcpServer echo_{echo_handler};
  Simulator sim_{SimulatorOptions{1, ""}};
};

TEST_F(Partitions, HalvesCutEveryLinkBetweenThem) {
  PartitionSpec spec;
  spec.name = "split";
  spec.groups = {{"primary", "witness"}, {"secondary"}};
  const auto cuts = cut(spec);
  EXPECT_EQ(cuts, (std::map<std::string, Direction>{{"repl", Direction::Both}, {"s_witness", Direction::Both}}));
  EXPECT_EQ(sim_.stats("p_witness").faults.size(), 0u);
  EXPECT_EQ(sim_.heal("split"), 2u);
  for (const auto& s : sim_.all_stats()) EXPECT_TRUE(s.faults.empty()) << s.name;
}

TEST_F(Partitions, OneWayCutsOnlyTrafficFromTheFirstGroup) {
  PartitionSpec spec;
  spec.groups = {{"secondary"}, {"primary", "witness"}};
  spec.one_way = true;
  const auto cuts = cut(spec);
  // repl runs primary -> secondary, so secondary -> primary traffic is its "down" direction.
  EXPECT_EQ(cuts, (std::map<std::string, Direction>{{"repl", Direction::Down}, {"s_witness", Direction::Up}}));
}

TEST_F(Partitions, BridgeNodeStaysConnectedToBothSides) {
  PartitionSpec spec;
  spec.groups = {{"primary", "witness"}, {"secondary", "witness"}};
  const auto cuts = cut(spec);
  EXPECT_EQ(cuts, (std::map<std::string, Direction>{{"repl", Direction::Both}}));
}

TEST_F(Partitions, AppliedAndHealedInOneStepAndTrafficStops) {
  Fd c = tcp_connect(sim_.listen_port("repl"));
  ASSERT_TRUE(send_all(c.get(), "a", 1));
  char in;
  ASSERT_EQ(recv_exact(c.get(), &in, 1, 5000ms), 1u);
  PartitionSpec spec;
  spec.links = {"repl", "s_witness"};
  cut(spec);
  ASSERT_TRUE(send_all(c.get(), "b", 1));
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 300ms), 0u);
  sim_.heal();
  EXPECT_EQ(recv_exact(c.get(), &in, 1, 5000ms), 1u);
  EXPECT_EQ(in, 'b');
}

TEST_F(Partitions, BadSpecsAreRefused) {
  PartitionSpec spec;
  EXPECT_THROW(sim_.partition(spec), std::invalid_argument);  // neither groups nor links
  spec.links = {"repl", "nope"};
  EXPECT_THROW(sim_.partition(spec), std::invalid_argument);
  EXPECT_TRUE(sim_.stats("repl").faults.empty()) << "nothing applied when one name is bad";
  spec.links.clear();
  spec.groups = {{"a"}, {"b"}, {"c"}};
  spec.one_way = true;
  EXPECT_THROW(sim_.partition(spec), std::invalid_argument);
}

TEST(EventLog, WritesTimestampedJsonLines) {
  const std::string path = ::testing::TempDir() + "netsim_events.jsonl";
  std::remove(path.c_str());
  {
    TcpServer echo(echo_handler);
    Simulator sim(SimulatorOptions{1, path});
    sim.add_link(tcp_link("l", echo.port()));
    sim.set_fault("l", fault("delay", Direction::Up, {{"delay", "1ms"}}));
    sim.clear_faults("l");
  }
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> events;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("t"));
    EXPECT_TRUE(j.contains("wall"));
    events.push_back(j["event"]);
  }
  EXPECT_EQ(events, (std::vector<std::string>{"link_started", "fault_set", "fault_active", "fault_cleared"}));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace netsim
