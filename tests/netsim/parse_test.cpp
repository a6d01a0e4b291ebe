// Parsing and validation: units, faults, links files, scenario files. Bad input must give an
// error that names the line and the key.
#include <gtest/gtest.h>

#include <algorithm>

#include "netsim/config.h"
#include "netsim/fault.h"
#include "netsim/random.h"
#include "netsim/scenario.h"

namespace netsim {
namespace {

using namespace std::chrono_literals;

TEST(Units, DurationsParseWithUnitsAndRefuseNonsense) {
  std::string error;
  EXPECT_EQ(parse_duration("500ms", error), Duration(500ms));
  EXPECT_EQ(parse_duration("1.5s", error), Duration(1500ms));
  EXPECT_EQ(parse_duration("250us", error), Duration(250us));
  EXPECT_FALSE(parse_duration("-5ms", error));
  EXPECT_NE(error.find("negative"), std::string::npos);
  EXPECT_FALSE(parse_duration("5", error));
  EXPECT_NE(error.find("unit"), std::string::npos);
  EXPECT_FALSE(parse_duration("100000h", error));
  EXPECT_NE(error.find("24h"), std::string::npos);
  EXPECT_FALSE(parse_duration("abc", error));
  EXPECT_FALSE(parse_duration("", error));
}

TEST(Units, RatesAndSizes) {
  std::string error;
  EXPECT_EQ(parse_rate("2MB/s", error), 2'000'000u);
  EXPECT_EQ(parse_rate("8Mbit/s", error), 1'000'000u);
  EXPECT_EQ(parse_rate("100kbps", error), 100'000u);
  EXPECT_FALSE(parse_rate("0.1B/s", error));
  EXPECT_FALSE(parse_rate("5TB/s", error));
  EXPECT_FALSE(parse_rate("-1MB/s", error));
  EXPECT_EQ(parse_bytes("64KiB", error), 65536u);
  EXPECT_EQ(parse_bytes("1MB", error), 1'000'000u);
  EXPECT_FALSE(parse_bytes("3 parsecs", error));
}


ParamList text_params(std::initializer_list<std::pair<std::string, std::string>> kv) {
  ParamList list;
  for (const auto& [k, v] : kv) list.emplace_back(k, ParamValue{v, "argument"});
  return list;
}

TEST(Faults, BuildsAValidFault) {
  std::string error;
  auto f = make_fault("delay", Direction::Up, text_params({{"delay", "20ms"}, {"jitter", "5ms"}, {"for", "1s"}}), error);
  ASSERT_TRUE(f) << error;
  EXPECT_EQ(f->kind, FaultKind::Delay);
  EXPECT_EQ(f->direction, Direction::Up);
  EXPECT_EQ(f->params.delay, Duration(20ms));
  EXPECT_EQ(f->params.jitter, Duration(5ms));
  EXPECT_EQ(f->schedule.duration, Duration(1s));
}

TEST(Faults, RefusesUnknownFaultUnknownKeyAndBadValues) {
  std::string error;
  EXPECT_FALSE(make_fault("latency", Direction::Both, {}, error));
  EXPECT_NE(error.find("unknown fault 'latency'"), std::string::npos) << error;

  EXPECT_FALSE(make_fault("loss", Direction::Both, text_params({{"probabilty", "0.1"}}), error));
  EXPECT_NE(error.find("key 'probabilty'"), std::string::npos) << error;

  EXPECT_FALSE(make_fault("loss", Direction::Both, text_params({{"probability", "1.5"}}), error));
  EXPECT_NE(error.find("outside [0, 1]"), std::string::npos) << error;

  EXPECT_FALSE(make_fault("loss", Direction::Both, text_params({{"probability", "-0.1"}}), error));
  EXPECT_FALSE(make_fault("delay", Direction::Both, text_params({{"delay", "-3ms"}}), error));
  EXPECT_NE(error.find("negative"), std::string::npos) << error;
  EXPECT_FALSE(make_fault("delay", Direction::Both, {}, error));
  EXPECT_NE(error.find("needs the parameter 'delay'"), std::string::npos) << error;
  EXPECT_FALSE(make_fault("slice", Direction::Both, text_params({{"size", "0"}}), error));
  EXPECT_FALSE(make_fault("bandwidth", Direction::Both, text_params({{"rate", "999TB/s"}}), error));
  EXPECT_FALSE(make_fault("flap", Direction::Both, text_params({{"on", "1s"}}), error));
  EXPECT_FALSE(make_fault("burst_loss", Direction::Both, text_params({{"p", "0.1"}, {"r", "0"}}), error));
}

TEST(Random, SameSeedSameStreamDifferentLabelDifferentStream) {
  Rng a(derive_seed(7, "repl", 1, 0)), b(derive_seed(7, "repl", 1, 0)), c(derive_seed(7, "hb", 1, 0));
  bool all_equal_c = true;
  for (int i = 0; i < 100; ++i) {
    const uint64_t x = a.next();
    EXPECT_EQ(x, b.next());
    if (x != c.next()) all_equal_c = false;
  }
  EXPECT_FALSE(all_equal_c);
}

TEST(Random, GeometricSkipHasTheRightMean) {
  Rng rng(1);
  double sum = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) sum += static_cast<double>(rng.geometric(0.01));
  // Mean of the number of failures before a success: (1-p)/p = 99; sd of the mean ~0.7.
  EXPECT_NEAR(sum / n, 99, 5);
}

TEST(LinksFile, ParsesLinks) {
  auto file = parse_links(R"(
seed = 9
[[link]]
name = "repl"
listen = "127.0.0.1:7100"
target = "127.0.0.1:7000"
from = "primary"
to = "secondary"
[[link]]
name = "hb2"
protocol = "udp"
target = "127.0.0.1:7001"
)");
  EXPECT_EQ(file.seed, 9u);
  ASSERT_EQ(file.links.size(), 2u);
  EXPECT_EQ(file.links[0].listen_port, 7100);
  EXPECT_EQ(file.links[0].from_node, "primary");
  EXPECT_EQ(file.links[1].protocol, Protocol::Udp);
}

std::string error_of(auto&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(LinksFile, ErrorsNameLineAndKey) {
  auto e = error_of([] { parse_links("[[link]]\nname = \"a\"\ntarget = \"127.0.0.1:99999\"\n", "links.toml"); });
  EXPECT_NE(e.find("links.toml:3"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'target'"), std::string::npos) << e;
  e = error_of([] { parse_links("[[link]]\nname = \"a\"\ntarget = \"127.0.0.1:1\"\nspeed = 3\n", "links.toml"); });
  EXPECT_NE(e.find("links.toml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'speed'"), std::string::npos) << e;
  e = error_of([] { parse_links("[[link]]\nname = \"a\"\n", "links.toml"); });
  EXPECT_NE(e.find("needs a target"), std::string::npos) << e;
}

TEST(ScenarioFile, ParsesAndSortsSteps) {
  auto s = parse_scenario(R"(
seed = 7
[[step]]
at = "2s"
link = "repl"
fault = "partition"
direction = "both"
for = "500ms"
[[step]]
at = "1s"
link = "hb"
fault = "loss"
probability = 0.25
[[step]]
at = "3s"
action = "partition"
groups = [["primary", "witness"], ["secondary"]]
bridge = "witness"
[[step]]
at = "4s"
action = "heal"
)");
  EXPECT_EQ(s.seed, 7u);
  ASSERT_EQ(s.steps.size(), 4u);
  EXPECT_EQ(s.steps[0].link, "hb");
  EXPECT_DOUBLE_EQ(s.steps[0].fault.params.probability, 0.25);
  EXPECT_EQ(s.steps[1].fault.kind, FaultKind::Partition);
  EXPECT_EQ(s.steps[1].fault.schedule.duration, Duration(500ms));
  EXPECT_EQ(s.steps[2].action, ScenarioStep::Action::Partition);
  EXPECT_EQ(s.steps[2].partition.groups[1], (std::vector<std::string>{"secondary", "witness"}));
  EXPECT_EQ(s.steps[3].action, ScenarioStep::Action::Heal);
}

TEST(ScenarioFile, MalformedFilesNameTheLineAndKey) {
  // TOML syntax error.
  auto e = error_of([] { parse_scenario("[[step]]\nat = \"1s\nlink = 3\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:2"), std::string::npos) << e;
  // Unknown fault.
  e = error_of([] { parse_scenario("[[step]]\nat = \"1s\"\nlink = \"a\"\nfault = \"teleport\"\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:4"), std::string::npos) << e;
  EXPECT_NE(e.find("unknown fault 'teleport'"), std::string::npos) << e;
  // Unknown key for the fault.
  e = error_of([] { parse_scenario("[[step]]\nat = \"1s\"\nlink = \"a\"\nfault = \"loss\"\nprobability = 0.1\ncolour = \"red\"\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:6"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'colour'"), std::string::npos) << e;
  // Negative value.
  e = error_of([] { parse_scenario("[[step]]\nat = \"1s\"\nlink = \"a\"\nfault = \"delay\"\ndelay = \"-5ms\"\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'delay'"), std::string::npos) << e;
  // Absurd value.
  e = error_of([] { parse_scenario("[[step]]\nat = \"1s\"\nlink = \"a\"\nfault = \"loss\"\nprobability = 40\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'probability'"), std::string::npos) << e;
  // Wrong type.
  e = error_of([] { parse_scenario("[[step]]\nat = 5\nlink = \"a\"\nfault = \"stall\"\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:2"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'at'"), std::string::npos) << e;
  // Missing 'at'.
  e = error_of([] { parse_scenario("[[step]]\nlink = \"a\"\nfault = \"stall\"\n", "s.toml"); });
  EXPECT_NE(e.find("key 'at'"), std::string::npos) << e;
  // Unknown top-level key.
  e = error_of([] { parse_scenario("sed = 4\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:1"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'sed'"), std::string::npos) << e;
  // Bad direction.
  e = error_of([] { parse_scenario("[[step]]\nat = \"0s\"\nlink = \"a\"\nfault = \"stall\"\ndirection = \"sideways\"\n", "s.toml"); });
  EXPECT_NE(e.find("s.toml:5"), std::string::npos) << e;
  EXPECT_NE(e.find("key 'direction'"), std::string::npos) << e;
}

TEST(Examples, ShippedExampleFilesAreValid) {
  const auto links = load_links(NETSIM_EXAMPLES_DIR "/links.toml");
  EXPECT_EQ(links.links.size(), 4u);
  const auto drill = load_scenario(NETSIM_EXAMPLES_DIR "/failover-drill.toml");
  EXPECT_EQ(drill.steps.size(), 7u);
  for (const auto& step : drill.steps) {
    if (!step.link.empty()) {
      const bool known = std::any_of(links.links.begin(), links.links.end(),
                                     [&](const LinkConfig& l) { return l.name == step.link; });
      EXPECT_TRUE(known) << "line " << step.line << " names link " << step.link;
    }
  }
}

}  // namespace
}  // namespace netsim
