// The set-full checker, the dual-primary rule over status spans, and the report's shape.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include <fmt/format.h>

#include "drills/drill.h"
#include "drills/monitor.h"
#include "drills/setfull.h"

namespace tandem::drills {
namespace {

TEST(SetFull, AckedWritesReadBackPass) {
  SetFullChecker c;
  c.write_sent("k1", "v1");
  c.write_acked("k1");
  c.write_sent("k2", "v2");
  c.write_acked("k2");
  c.read("k1", "v1");
  c.read("k1", "v1", true);
  c.read("k2", "v2", true);
  const auto n = c.counts();
  EXPECT_EQ(n.attempted, 2u);
  EXPECT_EQ(n.acked, 2u);
  EXPECT_EQ(n.indeterminate, 0u);
  EXPECT_EQ(n.acked_lost, 0u);
  EXPECT_EQ(n.phantoms, 0u);
  EXPECT_EQ(n.reads, 3u);
  EXPECT_TRUE(c.problems().empty());
}

TEST(SetFull, AckedWriteNotFoundIsLost) {
  SetFullChecker c;
  c.write_sent("k1", "v1");
  c.write_acked("k1");
  c.read("k1", std::nullopt, true);
  EXPECT_EQ(c.counts().acked_lost, 1u);
  EXPECT_EQ(c.counts().phantoms, 0u);
  ASSERT_EQ(c.problems().size(), 1u);
  EXPECT_NE(c.problems()[0].find("lost: key k1"), std::string::npos);
  EXPECT_NE(c.problems()[0].find("NOT_FOUND"), std::string::npos);
}

TEST(SetFull, LostIsCountedOncePerKey) {
  SetFullChecker c;
  c.write_sent("k1", "v1");
  c.write_acked("k1");
  c.read("k1", std::nullopt);
  c.read("k1", std::nullopt, true);
  EXPECT_EQ(c.counts().acked_lost, 1u);
}

TEST(SetFull, WrongValueIsLostAndPhantom) {
  SetFullChecker c;
  c.write_sent("k1", "v1");
  c.write_acked("k1");
  c.read("k1", "v-other", true);
  EXPECT_EQ(c.counts().acked_lost, 1u);
  EXPECT_EQ(c.counts().phantoms, 1u);
}

TEST(SetFull, ValueNeverWrittenIsPhantom) {
  SetFullChecker c;
  c.read("never", "x");
  EXPECT_EQ(c.counts().phantoms, 1u);
  c.read("never", std::nullopt);  // NOT_FOUND for a key nobody wrote is right
  EXPECT_EQ(c.counts().phantoms, 1u);
  // An unacknowledged write read back with another value is a phantom too.
  c.write_sent("k2", "v2");
  c.read("k2", "v3", true);
  EXPECT_EQ(c.counts().phantoms, 2u);
  EXPECT_EQ(c.counts().acked_lost, 0u);
}

TEST(SetFull, IndeterminateWriteMayGoEitherWay) {
  SetFullChecker c;
  c.write_sent("applied", "a");
  c.write_sent("dropped", "d");
  c.read("applied", "a", true);
  c.read("dropped", std::nullopt, true);
  const auto n = c.counts();
  EXPECT_EQ(n.indeterminate, 2u);
  EXPECT_EQ(n.indeterminate_present, 1u);
  EXPECT_EQ(n.acked_lost, 0u);
  EXPECT_EQ(n.phantoms, 0u);
}

TEST(SetFull, DuplicateAcksAreCountedNotErrors) {
  SetFullChecker c;
  c.write_sent("k1", "v1");
  c.write_acked("k1");
  c.write_acked("k1");  // a repeated OK (at-least-once output across a failover)
  c.read("k1", "v1", true);
  const auto n = c.counts();
  EXPECT_EQ(n.acked, 1u);
  EXPECT_EQ(n.duplicate_acks, 1u);
  EXPECT_EQ(n.acked_lost, 0u);
  EXPECT_EQ(c.acked_keys().size(), 1u);
}

TEST(SetFull, MisuseIsRefused) {
  SetFullChecker c;
  c.write_sent("k1", "v1");
  EXPECT_THROW(c.write_sent("k1", "v2"), std::logic_error);  // one write per key
  EXPECT_THROW(c.write_acked("nope"), std::logic_error);
}

TEST(SetFull, KeysToVerifyCoverAckedAndUnacked) {
  SetFullChecker c;
  c.write_sent("a", "1");
  c.write_acked("a");
  c.write_sent("b", "2");
  auto keys = c.keys_to_verify();
  std::sort(keys.begin(), keys.end());
  EXPECT_EQ(keys, (std::vector<std::string>{"a", "b"}));
}

TEST(SetFull, ProblemListIsBounded) {
  SetFullChecker c;
  for (int i = 0; i < 100; ++i) c.read(fmt::format("k{}", i), "x");
  EXPECT_EQ(c.counts().phantoms, 100u);
  EXPECT_LE(c.problems().size(), 20u);
}

// ---- dual primaries from status spans ----

Clock::time_point at(int ms) { return Clock::time_point(std::chrono::milliseconds(ms)); }

LiveSpan span(int slot, uint64_t epoch, int first_reply, int last_request, uint32_t polls = 5) {
  LiveSpan s;
  s.slot = slot;
  s.epoch = epoch;
  s.first_reply = at(first_reply);
  s.last_request = at(last_request);
  s.last_reply = at(last_request + 1);
  s.polls = polls;
  return s;
}

TEST(DualPrimary, HandoverWithoutOverlapIsClean) {
  EXPECT_TRUE(find_dual_primaries({span(0, 1, 0, 1000), span(1, 2, 1100, 2000)}).empty());
}

TEST(DualPrimary, OverlappingSpansInDifferentEpochs) {
  const auto found = find_dual_primaries({span(0, 1, 0, 1500), span(1, 2, 1100, 2000)});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].epoch, 1u);  // the older epoch is the one that should have stopped
}

TEST(DualPrimary, SameEpochOnTwoNodesEvenApart) {
  const auto found = find_dual_primaries({span(0, 3, 0, 100), span(1, 3, 5000, 6000)});
  ASSERT_EQ(found.size(), 1u);
  EXPECT_EQ(found[0].epoch, 3u);
}

TEST(DualPrimary, OnePollProvesNoSpan) {
  // Seen live once: live at some instant in [request, reply], not necessarily during the other's span.
  EXPECT_TRUE(find_dual_primaries({span(0, 1, 1200, 1190, 1), span(1, 2, 1100, 2000)}).empty());
}

TEST(DualPrimary, SameNodeNewEpochIsNotDual) {
  EXPECT_TRUE(find_dual_primaries({span(0, 1, 0, 1000), span(0, 2, 500, 2000)}).empty());
}

// ---- report ----

TEST(Report, JsonHasPerIterationAndTotalFields) {
  DrillReport report;
  report.drill = "kill-primary";
  IterationResult a;
  a.iteration = 1;
  a.passed = true;
  a.failover_ms = 100;
  a.unavailable_ms = 120;
  IterationResult b;
  b.iteration = 2;
  b.passed = false;
  b.failover_ms = 300;
  b.unavailable_ms = 310;
  b.acked_lost = 2;
  b.dual_primary_epochs = 1;
  report.iterations = {a, b};
  const auto j = report_to_json(report);
  ASSERT_EQ(j["iterations"].size(), 2u);
  for (const auto& it : j["iterations"])
    for (const char* key : {"acked_lost", "dual_primary_epochs", "failover_ms", "unavailable_ms", "passed"})
      EXPECT_TRUE(it.contains(key)) << key;
  const auto& t = j["totals"];
  EXPECT_EQ(t["acked_lost"], 2);
  EXPECT_EQ(t["dual_primary_epochs"], 1);
  EXPECT_EQ(t["passed"], false);
  EXPECT_EQ(t["iterations_passed"], 1);
  EXPECT_EQ(t["failover_ms"]["max"], 300.0);
  EXPECT_EQ(t["failover_ms"]["p50"], 100.0);
  EXPECT_EQ(t["unavailable_ms"]["count"], 2);
  EXPECT_FALSE(report.passed());
}

TEST(Report, NoFailoverIsNull) {
  DrillReport report;
  report.drill = "partition-link";
  IterationResult a;
  a.iteration = 1;
  a.passed = true;
  report.iterations = {a};
  const auto j = report_to_json(report);
  EXPECT_TRUE(j["iterations"][0]["failover_ms"].is_null());
  EXPECT_TRUE(j["totals"]["failover_ms"].is_null());
  EXPECT_TRUE(report.passed());
  report.aborted = "interrupted";
  EXPECT_FALSE(report.passed());
}

TEST(Report, Percentile) {
  EXPECT_EQ(percentile({}, 50), 0);
  EXPECT_EQ(percentile({5}, 99), 5);
  EXPECT_EQ(percentile({4, 1, 3, 2}, 50), 2);
  EXPECT_EQ(percentile({4, 1, 3, 2}, 100), 4);
}

TEST(Drills, CatalogueNamesAreUnique) {
  std::set<std::string> names;
  for (const auto& d : all_drills()) EXPECT_TRUE(names.insert(d.name).second) << d.name;
  EXPECT_EQ(names.size(), 8u);
  EXPECT_NE(find_drill("freeze-secondary"), nullptr);
  EXPECT_NE(find_drill("kill-primary"), nullptr);
  EXPECT_EQ(find_drill("kill"), nullptr);
}

}  // namespace
}  // namespace tandem::drills
