// Bad checkpoint streams are refused with a CheckpointError that says what and where, and
// the machine they were applied to is left exactly as it was. Streams are damaged in two
// ways: plainly (truncated, bytes flipped: the trailer's hash must catch them) and
// "resealed" (a field changed and the trailer hash recomputed, as a buggy or hostile
// writer would), which exercises the checks behind the hash.
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <random>

#include "checkpoint/checkpoint.h"
#include "checkpoint/format.h"
#include "tests/checkpoint/test_guests.h"

namespace tandem::checkpoint {
namespace {

using testing::ScriptWorld;
using vmm::Exit;
using vmm::Machine;
using vmm::MachineConfig;
namespace wire = format;

MachineConfig config(uint64_t mem_mib) {
  MachineConfig c;
  c.mem_bytes = mem_mib << 20;
  return c;
}

// Recomputes the trailer's stream hash after an edit.
void reseal(std::string& s) {
  const size_t at = s.size() - wire::kTrailerBytes;
  wire::put<uint64_t>(s.data() + at + 16, XXH3_64bits(s.data(), at + 16));
}

struct RecordAt {
  size_t offset;
  wire::RecordHeader header;
};

// The records of a well-formed stream.
std::vector<RecordAt> records_of(const std::string& s) {
  std::vector<RecordAt> out;
  size_t at = wire::kHeaderBytes;
  while (at < s.size() - wire::kTrailerBytes) {
    const wire::RecordHeader r = wire::decode_record_header(s.data() + at);
    out.push_back({at, r});
    at += wire::kRecordHeaderBytes + r.stored_len;
  }
  return out;
}

RecordAt first_of(const std::vector<RecordAt>& records, wire::RecordType type, wire::Codec codec) {
  for (const RecordAt& r : records) {
    if (r.header.type == static_cast<uint8_t>(type) && r.header.codec == static_cast<uint8_t>(codec)) return r;
  }
  throw std::runtime_error("test stream lacks the record kind it needs");
}

class BadInputTest : public ::testing::Test {
 protected:
  BadInputTest() : src_(config(16), src_world_), dst_(config(16), dst_world_) {
    dir_ = std::filesystem::temp_directory_path() / ("tandem_ckpt_bad_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    const std::string image = (dir_ / "walker.bin").string();
    testing::write_file(image, testing::walker_image(1u << 20));
    src_.load(image);
    EXPECT_EQ(src_.run_until(60'000).exit, Exit::Running);
    // Incompressible pages, so the raw codec appears in compressed streams too.
    std::mt19937_64 rng(5);
    std::vector<uint8_t> noise(2 * vmm::kPageSize);
    for (auto& b : noise) b = static_cast<uint8_t>(rng());
    EXPECT_TRUE(src_.memory().write(src_.memory().base() + (8u << 20), noise));
    // The destination has a life of its own, so "unchanged" means something.
    dst_.load(image);
    EXPECT_EQ(dst_.run_until(33'333).exit, Exit::Running);
    dst_hash_ = dst_.state_hash();
  }
  ~BadInputTest() override { std::filesystem::remove_all(dir_); }

  std::string full(Compression c) {
    Options o;
    o.compression = c;
    return write_full(src_, o);
  }

  // Refused, with a message containing `fragment`, and the destination untouched.
  void expect_refused(std::string_view stream, const std::string& fragment, const std::string& what) {
    try {
      checkpoint::apply(dst_, stream);
      ADD_FAILURE() << what << ": accepted";
      return;
    } catch (const CheckpointError& e) {
      EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << what << ": " << e.what();
    }
    EXPECT_EQ(dst_.state_hash(), dst_hash_) << what << ": the machine changed";
  }

  std::filesystem::path dir_;
  ScriptWorld src_world_, dst_world_;
  Machine src_, dst_;
  uint64_t dst_hash_ = 0;
};

TEST_F(BadInputTest, TheUndamagedStreamsApply) {
  // The control for every test below: the same streams, undamaged, are accepted.
  for (Compression c : {Compression::None, Compression::Lz4, Compression::Zstd}) {
    ScriptWorld w;
    Machine fresh(config(16), w);
    checkpoint::apply(fresh, full(c));
    EXPECT_EQ(fresh.state_hash(), src_.state_hash()) << to_string(c);
  }
}

TEST_F(BadInputTest, TruncatedAtAnyOffsetIsRefused) {
  for (Compression c : {Compression::None, Compression::Lz4, Compression::Zstd}) {
    const std::string stream = full(c);
    std::vector<size_t> cuts;
    for (size_t n = 0; n < 200; ++n) cuts.push_back(n);
    for (size_t n = 200; n < stream.size(); n += 509) cuts.push_back(n);
    for (size_t n = stream.size() - 100; n < stream.size(); ++n) cuts.push_back(n);
    for (size_t n : cuts) {
      expect_refused(std::string_view(stream).substr(0, n), "truncated",
                     std::string(to_string(c)) + " cut at " + std::to_string(n) + " of " + std::to_string(stream.size()));
    }
  }
}

TEST_F(BadInputTest, FlippedByteAnywhereIsRefused) {
  for (Compression c : {Compression::None, Compression::Lz4}) {
    std::string stream = full(c);
    std::vector<size_t> offsets;
    for (size_t n = 0; n < 300; ++n) offsets.push_back(n);  // header, core record
    // ~500 more spread over the records (a prime stride, so they land at varied positions
    // inside records and payloads).
    const size_t stride = std::max<size_t>(211, stream.size() / 500) | 1;
    for (size_t n = 300; n < stream.size(); n += stride) offsets.push_back(n);
    for (size_t n = stream.size() - wire::kTrailerBytes; n < stream.size(); ++n) offsets.push_back(n);
    for (size_t n : offsets) {
      const char mask = static_cast<char>(1 << (n % 8));
      stream[n] ^= mask;  // flipped in place (and back below): copying a big stream per offset is slow under ASan
      // Most flips are caught by the stream hash ("corrupt"); flips in the header fields are
      // caught by their own checks first. Either way: refused, nothing changed.
      expect_refused(stream, "checkpoint: ", std::string(to_string(c)) + " flip at " + std::to_string(n));
      stream[n] ^= mask;
    }
    checkpoint::apply(dst_, stream);  // restored: the undamaged stream still applies
    EXPECT_EQ(dst_.state_hash(), src_.state_hash());
    dst_hash_ = dst_.state_hash();
  }
}

TEST_F(BadInputTest, HeaderMismatchesAreNamed) {
  const std::string good = full(Compression::Lz4);
  std::string bad = good;
  bad[0] = 'X';
  expect_refused(bad, "bad magic", "magic");
  expect_refused("this is not a snapshot at all", "bad magic", "text file");
  expect_refused("", "truncated", "empty");

  bad = good;
  wire::put<uint32_t>(bad.data() + 8, 2);
  reseal(bad);
  expect_refused(bad, "version 2 is not supported", "version");

  bad = good;
  bad[12] = 9;
  reseal(bad);
  expect_refused(bad, "kind", "kind");

  bad = good;
  bad[13] = 7;
  reseal(bad);
  expect_refused(bad, "compression", "compression");

  bad = good;
  bad[14] = 0;  // a full checkpoint that claims no core state
  reseal(bad);
  expect_refused(bad, "without core", "flags");

  bad = good;
  wire::put<uint64_t>(bad.data() + 16, 12345);
  reseal(bad);
  expect_refused(bad, "multiple of 4 KiB", "odd RAM size");

  bad = good + "extra";
  expect_refused(bad, "truncated or damaged", "trailing bytes");
}

TEST_F(BadInputTest, WrongRamSizeNamesTheRightOne) {
  ScriptWorld w;
  Machine bigger(config(32), w);
  const uint64_t before = bigger.state_hash();
  try {
    checkpoint::apply(bigger, full(Compression::Lz4));
    FAIL() << "accepted a 16 MiB checkpoint on a 32 MiB machine";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("--mem 16"), std::string::npos) << e.what();
  }
  EXPECT_EQ(bigger.state_hash(), before);
}

TEST_F(BadInputTest, WildPageIndicesAreRefused) {
  const std::string good = full(Compression::None);
  const auto records = records_of(good);
  const RecordAt page = first_of(records, wire::RecordType::Page, wire::Codec::Raw);
  for (uint64_t index : {uint64_t{1} << 40, uint64_t{4096} /* = page_count of 16 MiB */, ~uint64_t{0}}) {
    std::string bad = good;
    wire::put<uint64_t>(bad.data() + page.offset + 8, index);
    reseal(bad);
    expect_refused(bad, "outside", "page index " + std::to_string(index));
  }

  // A zero run that starts inside RAM but runs past its end.
  ScriptWorld w;
  Machine m(config(16), w);
  m.load((dir_ / "walker.bin").string());
  ASSERT_EQ(m.run_until(60'000).exit, Exit::Running);
  (void)write_full(m);
  const std::vector<uint8_t> zeros(vmm::kPageSize, 0);
  ASSERT_TRUE(m.memory().write(m.memory().base() + (1u << 20), zeros));
  const std::string inc = write_incremental(m);
  const RecordAt run = first_of(records_of(inc), wire::RecordType::Page, wire::Codec::ZeroRun);
  std::string bad = inc;
  wire::put<uint64_t>(bad.data() + run.offset + 16, uint64_t{1} << 62);
  reseal(bad);
  expect_refused(bad, "outside", "zero run past the end");
}

TEST_F(BadInputTest, RecordLevelDamageBehindAValidTrailerIsRefused) {
  const std::string good = full(Compression::None);
  const auto records = records_of(good);
  const RecordAt page = first_of(records, wire::RecordType::Page, wire::Codec::Raw);
  const size_t payload = page.offset + wire::kRecordHeaderBytes;

  std::string bad = good;
  bad[payload + 100] ^= 0x40;
  reseal(bad);
  expect_refused(bad, "fails its XXH3 check", "page byte");

  bad = good;
  bad[page.offset] = 'Q';
  reseal(bad);
  expect_refused(bad, "unknown record type", "record type");

  bad = good;
  bad[page.offset + 1] = 9;
  reseal(bad);
  expect_refused(bad, "unknown codec", "codec");

  bad = good;
  wire::put<uint32_t>(bad.data() + page.offset + 4, 0x7fffffff);
  reseal(bad);
  expect_refused(bad, "run past the trailer", "stored length");

  bad = good;
  wire::put<uint64_t>(bad.data() + page.offset + 16, 8192);
  reseal(bad);
  expect_refused(bad, "page length is not 4096", "page length");

  // Two pages in the wrong order.
  const RecordAt* second = nullptr;
  for (const RecordAt& r : records) {
    if (r.header.type == static_cast<uint8_t>(wire::RecordType::Page) && r.offset > page.offset) {
      second = &r;
      break;
    }
  }
  ASSERT_NE(second, nullptr);
  bad = good;
  wire::put<uint64_t>(bad.data() + second->offset + 8, page.header.index);
  reseal(bad);
  expect_refused(bad, "out of order", "order");

  bad = good;
  const size_t trailer = bad.size() - wire::kTrailerBytes;
  wire::put<uint64_t>(bad.data() + trailer + 8, records.size() + 1);
  reseal(bad);
  expect_refused(bad, "trailer counts", "record count");
}

TEST_F(BadInputTest, CompressedGarbageIsRefused) {
  for (Compression c : {Compression::Lz4, Compression::Zstd}) {
    const std::string good = full(c);
    const wire::Codec codec = c == Compression::Lz4 ? wire::Codec::Lz4 : wire::Codec::Zstd;
    const RecordAt page = first_of(records_of(good), wire::RecordType::Page, codec);
    std::string bad = good;
    for (size_t i = 0; i < page.header.stored_len; ++i) bad[page.offset + wire::kRecordHeaderBytes + i] = '\xff';
    reseal(bad);
    expect_refused(bad, "does not decompress", to_string(c));
  }
}

TEST_F(BadInputTest, CoreStateMismatchesAreCaughtBeforeAnythingIsWritten) {
  const std::string good = full(Compression::None);
  const RecordAt core = first_of(records_of(good), wire::RecordType::Core, wire::Codec::Raw);
  const size_t payload = core.offset + wire::kRecordHeaderBytes;
  // Edits the core payload, then fixes its record hash and the trailer: only the core
  // pre-checks stand between this stream and the machine.
  auto edited = [&](size_t at, const void* bytes, size_t len) {
    std::string s = good;
    std::memcpy(s.data() + payload + at, bytes, len);
    wire::put<uint64_t>(s.data() + core.offset + 24, XXH3_64bits(s.data() + payload, core.header.length));
    reseal(s);
    return s;
  };
  expect_refused(edited(0, "XXXX", 4), "not machine state", "core magic");
  const uint32_t version = 99;
  expect_refused(edited(4, &version, 4), "machine state version 99", "core version");
  const uint64_t mem = uint64_t{32} << 20;
  expect_refused(edited(8, &mem, 8), "is for 32 MiB", "core RAM size");
  const uint64_t icount = 1;
  expect_refused(edited(16, &icount, 8), "icount", "core icount");
}

TEST_F(BadInputTest, RandomStreamsNeverCrash) {
  std::mt19937_64 rng(2024);
  const std::string good = full(Compression::Lz4);
  for (int i = 0; i < 300; ++i) {
    // A valid header, random body, a trailer with a correct hash: only the record checks
    // stand in the way.
    std::string s = good.substr(0, wire::kHeaderBytes);
    const size_t body = 1 + rng() % 600;
    for (size_t k = 0; k < body; ++k) s.push_back(static_cast<char>(rng()));
    s.resize(s.size() + wire::kTrailerBytes);
    std::memcpy(s.data() + s.size() - wire::kTrailerBytes, wire::kTrailerTag, 4);
    wire::put<uint64_t>(s.data() + s.size() - 16, rng() % 4);
    reseal(s);
    expect_refused(s, "checkpoint: ", "random body " + std::to_string(i));
  }
}

}  // namespace
}  // namespace tandem::checkpoint
