// The event-log file format: round trip, and every class of bad file refused with the
// offset of the problem.
#include "vmm-hooks/event_log.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <filesystem>
#include <fstream>
#include <iterator>

namespace tandem::hooks {
namespace {

class EventLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("tandem_event_log_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override { std::filesystem::remove(path_); }

  log::LogHeader header() const {
    log::LogHeader h;
    h.set_format_version(kLogFormatVersion);
    h.mutable_config()->set_mem_bytes(128u << 20);
    h.mutable_config()->set_guest_name("kv.elf");
    h.set_initial_state_hash(0x1234);
    h.set_audit_interval(10'000'000);
    return h;
  }
  static log::LogBatch batch(uint64_t seq, uint64_t icount) {
    log::LogBatch b;
    b.set_sequence(seq);
    auto* r = b.add_records();
    r->set_icount(icount);
    r->set_kind(log::CONSOLE_INPUT);
    r->set_payload("GET k\n");
    return b;
  }
  void write_three() {
    LogFileWriter w(path_.string(), header());
    for (uint64_t i = 0; i < 3; ++i) w.append(batch(i, 100 * (i + 1)));
  }
  std::string bytes() const {
    std::ifstream in(path_, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  void put(const std::string& b) const {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << b;
  }
  std::filesystem::path path_;
};

TEST_F(EventLogTest, RoundTripPreservesHeaderAndBatches) {
  write_three();
  LogFileReader r(path_.string());
  EXPECT_EQ(r.header().config().guest_name(), "kv.elf");
  EXPECT_EQ(r.header().initial_state_hash(), 0x1234u);
  for (uint64_t i = 0; i < 3; ++i) {
    auto b = r.next();
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(b->sequence(), i);
    ASSERT_EQ(b->records_size(), 1);
    EXPECT_EQ(b->records(0).icount(), 100 * (i + 1));
    EXPECT_EQ(b->records(0).payload(), "GET k\n");
  }
  EXPECT_FALSE(r.next().has_value());
}

TEST_F(EventLogTest, BadMagicIsRefusedAtOffsetZero) {
  put("this is not a log at all");
  try {
    LogFileReader r(path_.string());
    FAIL() << "accepted a file with a bad magic";
  } catch (const LogError& e) {
    EXPECT_EQ(e.offset(), 0u);
  }
}

TEST_F(EventLogTest, WrongFormatVersionIsRefused) {
  auto h = header();
  h.set_format_version(kLogFormatVersion + 7);
  { LogFileWriter w(path_.string(), h); }
  EXPECT_THROW({ LogFileReader r(path_.string()); }, LogError);
}

TEST_F(EventLogTest, PreFpLogIsRefusedWithItsVersion) {
  // Version 3 logs predate the F/D state in the state hash: refused up front, by version.
  EXPECT_EQ(kLogFormatVersion, 4u);
  auto h = header();
  h.set_format_version(3);
  { LogFileWriter w(path_.string(), h); }
  try {
    LogFileReader r(path_.string());
    FAIL() << "a version-3 log was accepted";
  } catch (const LogError& e) {
    EXPECT_NE(std::string(e.what()).find("format version 3 "), std::string::npos) << e.what();
  }
}

TEST_F(EventLogTest, TruncatedTailNamesTheOffsetOfTheLastFrame) {
  write_three();
  const std::string full = bytes();
  put(full.substr(0, full.size() - 3));
  LogFileReader r(path_.string());
  ASSERT_TRUE(r.next().has_value());
  const uint64_t third_frame_at = [&] {
    r.next();
    return r.offset();
  }();
  try {
    r.next();
    FAIL() << "truncated frame was accepted";
  } catch (const LogError& e) {
    EXPECT_EQ(e.offset(), third_frame_at);
  }
}

TEST_F(EventLogTest, FlippedByteIsACorruptedBatch) {
  write_three();
  std::string b = bytes();
  b[b.size() - 2] ^= 0x40;
  put(b);
  LogFileReader r(path_.string());
  r.next();
  r.next();
  EXPECT_THROW(r.next(), LogError);
}

TEST_F(EventLogTest, AbsurdLengthIsRefusedWithoutAllocating) {
  write_three();
  std::string b = bytes();
  // The first batch frame starts right after the magic and the header frame.
  LogFileReader probe(path_.string());
  const uint64_t first = probe.offset();
  b[first + 3] = '\x7f';  // length's top byte: ~2 GiB
  put(b);
  LogFileReader r(path_.string());
  EXPECT_THROW(r.next(), LogError);
}

TEST_F(EventLogTest, MissingBatchIsASequenceGap) {
  {
    LogFileWriter w(path_.string(), header());
    w.append(batch(0, 10));
    w.append(batch(2, 30));
  }
  LogFileReader r(path_.string());
  ASSERT_TRUE(r.next().has_value());
  EXPECT_THROW(r.next(), LogError);
}

TEST_F(EventLogTest, ValidChecksumButGarbagePayloadIsNotABatch) {
  {
    LogFileWriter w(path_.string(), header());
  }
  std::string b = bytes();
  // A frame whose payload is syntactically invalid protobuf (truncated varint).
  std::string payload = "\x08\xff\xff\xff";
  std::string frame;
  uint32_t len = payload.size();
  frame.append(reinterpret_cast<const char*>(&len), 4);
  uint64_t digest = XXH3_64bits(payload.data(), payload.size());
  frame.append(reinterpret_cast<const char*>(&digest), 8);
  frame += payload;
  put(b + frame);
  LogFileReader r(path_.string());
  EXPECT_THROW(r.next(), LogError);
}

}  // namespace
}  // namespace tandem::hooks
