// Checkpoint round trips: a machine that receives a full checkpoint, then incrementals
// taken while the source keeps running, then a final incremental with the core state,
// has the source's state hash at that icount (and its disk bytes), and runs on in step.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <functional>
#include <random>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "tests/checkpoint/test_guests.h"
#include "tests/vmm/scratch_dir.h"
#include "vmm/devices/disk_image.h"

namespace tandem::checkpoint {
namespace {

using testing::ScriptWorld;
using vmm::Exit;
using vmm::Machine;
using vmm::MachineConfig;

class CheckpointTest : public ::testing::TestWithParam<Compression> {
 protected:
  std::string path(const std::string& name) const { return (dir_.path() / name).string(); }

  std::string walker(uint32_t span = 2u << 20) {
    const std::string p = path("walker.bin");
    testing::write_file(p, testing::walker_image(span));
    return p;
  }

  static MachineConfig config(uint64_t mem_mib, const std::string& disk = {}) {
    MachineConfig c;
    c.mem_bytes = mem_mib << 20;
    c.disk_path = disk;
    return c;
  }

  Options options() const {
    Options o;
    o.compression = GetParam();
    return o;
  }

  // Incompressible bytes written the way a device would (DMA), so raw storage is exercised.
  static void scribble(Machine& m, uint64_t offset, size_t len, uint32_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<uint8_t> bytes(len);
    for (auto& b : bytes) b = static_cast<uint8_t>(rng());
    ASSERT_TRUE(m.memory().write(m.memory().base() + offset, bytes));
  }

  test::ScratchDir dir_{"tandem_ckpt_test_"};
};

TEST_P(CheckpointTest, FullCheckpointGivesTheSameStateAndRunsOnInStep) {
  ScriptWorld wa, wb;
  Machine src(config(32), wa);
  src.load(walker());
  ASSERT_EQ(src.run_until(300'000).exit, Exit::Running);
  scribble(src, 20u << 20, 3 * vmm::kPageSize + 100, 1);

  Stats stats;
  const std::string stream = write_full(src, options(), &stats);
  EXPECT_EQ(stats.stream_bytes, stream.size());
  EXPECT_GT(stats.pages, 500u);  // the walker has covered its 2 MiB
  EXPECT_EQ(stats.pages + stats.zero_pages_skipped, src.memory().page_count());
  EXPECT_EQ(stats.disk_blocks, 0u);
  if (GetParam() != Compression::None) {
    EXPECT_LT(stream.size(), stats.raw_bytes);
  }

  Machine dst(config(32), wb);
  checkpoint::apply(dst, stream);
  EXPECT_EQ(dst.icount(), src.icount());
  EXPECT_EQ(dst.state_hash(), src.state_hash());

  ASSERT_EQ(src.run_until(700'000).exit, Exit::Running);
  ASSERT_EQ(dst.run_until(700'000).exit, Exit::Running);
  EXPECT_EQ(dst.state_hash(), src.state_hash());
}

TEST_P(CheckpointTest, PreCopyRoundsThenStopAndCopyReachTheSourceState) {
  ScriptWorld wa, wb;
  Machine src(config(32), wa);
  src.load(walker(4u << 20));
  ASSERT_EQ(src.run_until(100'000).exit, Exit::Running);
  Machine dst(config(32), wb);
  Stats full_stats;
  checkpoint::apply(dst, write_full(src, options(), &full_stats));

  Options round = options();
  round.include_core = false;
  uint64_t icount = 100'000;
  for (int i = 0; i < 4; ++i) {
    icount += 40'000 + 7919 * i;
    ASSERT_EQ(src.run_until(icount).exit, Exit::Running);
    if (i == 2) scribble(src, 12u << 20, 2 * vmm::kPageSize, 7);
    Stats s;
    const std::string inc = write_incremental(src, round, &s);
    EXPECT_GT(s.pages, 0u);
    EXPECT_LT(s.pages, full_stats.pages + 10);
    EXPECT_EQ(inspect(inc).kind, Kind::Incremental);
    EXPECT_FALSE(inspect(inc).has_core);
    checkpoint::apply(dst, inc);
    // Without the core state the destination's CPU is still at the full checkpoint.
    EXPECT_EQ(dst.icount(), 100'000u);
  }
  ASSERT_EQ(src.run_until(icount + 1234).exit, Exit::Running);
  const std::string last = write_incremental(src, options());
  EXPECT_TRUE(inspect(last).has_core);
  checkpoint::apply(dst, last);
  EXPECT_EQ(dst.icount(), src.icount());
  EXPECT_EQ(dst.state_hash(), src.state_hash());

  ASSERT_EQ(src.run_until(icount + 500'000).exit, Exit::Running);
  ASSERT_EQ(dst.run_until(icount + 500'000).exit, Exit::Running);
  EXPECT_EQ(dst.state_hash(), src.state_hash());
}

TEST_P(CheckpointTest, IncrementalCarriesExactlyTheChangedPagesAndZeroedOnes) {
  ScriptWorld wa, wb;
  Machine src(config(16), wa);
  src.load(walker());
  ASSERT_EQ(src.run_until(50'000).exit, Exit::Running);
  Machine dst(config(16), wb);
  checkpoint::apply(dst, write_full(src, options()));

  Stats s;
  std::string inc = write_incremental(src, options(), &s);
  EXPECT_EQ(s.pages, 0u);  // nothing ran, nothing changed
  EXPECT_EQ(s.zero_pages_skipped, 0u);

  scribble(src, 8u << 20, 3 * vmm::kPageSize, 3);  // three new pages
  const std::vector<uint8_t> zeros(vmm::kPageSize, 0);
  const uint64_t walked = src.memory().base() + (1u << 20);  // a page the walker wrote
  ASSERT_TRUE(src.memory().write(walked, zeros));
  inc = write_incremental(src, options(), &s);
  EXPECT_EQ(s.pages, 3u);
  EXPECT_EQ(s.zero_pages_skipped, 1u);
  checkpoint::apply(dst, inc);
  EXPECT_EQ(dst.state_hash(), src.state_hash());
  std::vector<uint8_t> page(vmm::kPageSize, 0xff);
  ASSERT_TRUE(dst.memory().read(walked, page));
  EXPECT_EQ(page, zeros);
}

TEST_P(CheckpointTest, ZeroPagesAreElided) {
  ScriptWorld w;
  Machine src(config(128), w);
  src.load(walker(16u << 10));  // touches 16 KiB
  ASSERT_EQ(src.run_until(20'000).exit, Exit::Running);
  Stats s;
  const std::string stream = write_full(src, options(), &s);
  // The image page, the device tree, the walked pages: a handful of the 32768.
  EXPECT_LE(s.pages, 16u);
  EXPECT_GE(s.zero_pages_skipped, 32768u - 16u);
  EXPECT_LT(stream.size(), 96u << 10) << "a 128 MiB guest that touched little";
  std::printf("[ stream ] 128 MiB guest touching 16 KiB: %zu bytes (%s), %llu pages\n", stream.size(),
              to_string(GetParam()), static_cast<unsigned long long>(s.pages));
}

TEST_P(CheckpointTest, FileSaveAndLoad) {
  ScriptWorld wa, wb;
  Machine src(config(16), wa);
  src.load(walker());
  ASSERT_EQ(src.run_until(77'777).exit, Exit::Running);
  const std::string file = path("snap.ckpt");
  save_file(src, file, options());
  for (const auto& entry : std::filesystem::directory_iterator(dir_.path())) {
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << "temporary left behind";
  }
  Machine dst(config(16), wb);
  load_file(dst, file);
  EXPECT_EQ(dst.state_hash(), src.state_hash());

  EXPECT_THROW(load_file(dst, path("missing.ckpt")), CheckpointError);
  EXPECT_THROW(save_file(src, path("no/such/dir/x.ckpt"), options()), CheckpointError);
}

TEST_P(CheckpointTest, ChunkedStreamIsTheSameBytesAndAFailingSinkLosesNothing) {
  ScriptWorld wa, wb;
  Machine src(config(16), wa);
  src.load(walker(4u << 20));  // enough pages for several 1 MiB chunks
  ASSERT_EQ(src.run_until(400'000).exit, Exit::Running);
  scribble(src, 8u << 20, 2u << 20, 11);
  const std::string whole = write_full(src, options());
  std::string joined;
  size_t chunks = 0;
  const Stats s = write_full(src, [&](std::string_view c) { joined.append(c), ++chunks; }, options());
  EXPECT_EQ(joined, whole);
  EXPECT_EQ(s.stream_bytes, whole.size());
  EXPECT_GT(chunks, 1u);

  // The link drops in the middle of an incremental: the next one must still be complete.
  Machine dst(config(16), wb);
  checkpoint::apply(dst, whole);
  ASSERT_EQ(src.run_until(500'000).exit, Exit::Running);
  scribble(src, 12u << 20, 2u << 20, 12);
  struct LinkDown {};
  EXPECT_THROW(write_incremental(src, [](std::string_view) { throw LinkDown{}; }, options()), LinkDown);
  checkpoint::apply(dst, write_incremental(src, options()));
  EXPECT_EQ(dst.state_hash(), src.state_hash());
}

// Pre-copy in bounded parts (the live pair's initial sync): every part is a complete
// incremental stream no bigger than the bound plus one record, and the parts of a full
// round define all of RAM even on a destination that holds stale memory.
TEST_P(CheckpointTest, PartedRoundsAreBoundedSelfContainedAndReachTheSourceState) {
  constexpr size_t kPartBytes = 256 << 10;
  ScriptWorld wa, wb;
  Machine src(config(32), wa);
  src.load(walker(4u << 20));
  ASSERT_EQ(src.run_until(200'000).exit, Exit::Running);
  scribble(src, 10u << 20, 3u << 20, 21);  // incompressible: several parts even with lz4/zstd
  Machine dst(config(32), wb);
  scribble(dst, 20u << 20, 1u << 20, 22);  // stale memory the source never had

  auto collect = [&](auto write) {
    std::vector<std::string> parts;
    const Stats s = write([&](std::string&& part) { parts.push_back(std::move(part)); });
    uint64_t total = 0;
    for (const std::string& part : parts) {
      total += part.size();
      EXPECT_LE(part.size(), kPartBytes + 2 * vmm::kPageSize);
      const StreamInfo info = inspect(part);
      EXPECT_EQ(info.kind, Kind::Incremental);
      EXPECT_FALSE(info.has_core);
      checkpoint::apply(dst, part);
    }
    EXPECT_EQ(total, s.stream_bytes);
    return std::make_pair(parts.size(), s);
  };
  const auto [full_parts, full] =
      collect([&](const PartSink& sink) { return write_full_parts(src, kPartBytes, sink, options()); });
  EXPECT_GE(full_parts, 12u);  // 3 MiB of random pages in 256 KiB parts
  EXPECT_EQ(full.pages + full.zero_pages_skipped, src.memory().page_count());
  EXPECT_EQ(dst.icount(), 0u);  // parts carry no core state

  uint64_t icount = 200'000;
  for (int round = 0; round < 3; ++round) {
    icount += 50'000;
    ASSERT_EQ(src.run_until(icount).exit, Exit::Running);
    const auto [n, s] =
        collect([&](const PartSink& sink) { return write_incremental_parts(src, kPartBytes, sink, options()); });
    EXPECT_GE(n, 1u);
    EXPECT_GT(s.pages, 0u);
    EXPECT_LT(s.pages, full.pages);
  }
  // The stop-and-copy: the last dirty pages in parts, then the core state on its own.
  ASSERT_EQ(src.run_until(icount + 777).exit, Exit::Running);
  collect([&](const PartSink& sink) { return write_incremental_parts(src, kPartBytes, sink, options()); });
  const std::string core = write_incremental(src, options());
  EXPECT_EQ(inspect(core).records, 1u);  // nothing changed since: only the core state
  checkpoint::apply(dst, core);
  // Nothing dirty now: still one (empty) part, so a round always has a message.
  std::vector<std::string> empty;
  write_incremental_parts(src, kPartBytes, [&](std::string&& p) { empty.push_back(std::move(p)); }, options());
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(inspect(empty[0]).records, 0u);
  EXPECT_EQ(dst.icount(), src.icount());
  EXPECT_EQ(dst.state_hash(), src.state_hash());
  ASSERT_EQ(src.run_until(icount + 400'000).exit, Exit::Running);
  ASSERT_EQ(dst.run_until(icount + 400'000).exit, Exit::Running);
  EXPECT_EQ(dst.state_hash(), src.state_hash());

  // A sink that fails midway (the link dropped) leaves the next round complete.
  struct LinkDown {};
  scribble(src, 4u << 20, 1u << 20, 23);
  int handed = 0;
  EXPECT_THROW(write_incremental_parts(src, kPartBytes,
                                       [&](std::string&& p) {
                                         if (++handed == 2) throw LinkDown{};
                                         checkpoint::apply(dst, p);
                                       },
                                       options()),
               LinkDown);
  collect([&](const PartSink& sink) { return write_incremental_parts(src, kPartBytes, sink, options()); });
  checkpoint::apply(dst, write_incremental(src, options()));
  EXPECT_EQ(dst.state_hash(), src.state_hash());
}

// The pre-copy's split (RoundCopier on the machine's thread, PartEncoder elsewhere): batches
// of any size, encoded on another thread, give exactly the parts write_full_parts gives
// (zero runs continue across batch boundaries); a part carries a page as it was when
// copied, and a page written after its copy is in the next round.
TEST_P(CheckpointTest, CopiedBatchesEncodedElsewhereGiveTheSamePartsAndLaterWritesGoInTheNextRound) {
  constexpr size_t kPartBytes = 256 << 10;
  ScriptWorld wa, wb;
  Machine src(config(32), wa);
  src.load(walker(4u << 20));
  ASSERT_EQ(src.run_until(200'000).exit, Exit::Running);
  scribble(src, 10u << 20, 1u << 20, 31);
  scribble(src, 12u << 20, 5 * vmm::kPageSize, 32);  // after a gap of zero pages

  std::vector<std::string> reference;
  write_full_parts(src, kPartBytes, [&](std::string&& p) { reference.push_back(std::move(p)); }, options());
  // Copied on this thread, encoded on another, in batches smaller than a part and not
  // a multiple of a page (a batch ends past its bound).
  auto pipelined = [&](Kind kind, size_t batch_bytes, const std::function<void()>& after_first_batch) {
    RoundCopier copier(src, kind);
    std::vector<RecordBatch> batches;
    while (!copier.done()) {
      batches.emplace_back();
      copier.copy_next(batch_bytes, batches.back());
      if (batches.size() == 1) after_first_batch();
    }
    std::vector<std::string> parts;
    Stats stats;
    std::thread encoder([&] {
      PartEncoder encode(kPartBytes, [&](std::string&& p) { parts.push_back(std::move(p)); }, options());
      for (const RecordBatch& b : batches) encode.add(b);
      stats = encode.finish();
    });
    encoder.join();
    return std::make_pair(parts, stats);
  };
  const auto [same, same_stats] = pipelined(Kind::Full, 3 * vmm::kPageSize + 1, [] {});
  EXPECT_EQ(same, reference);
  EXPECT_EQ(same_stats.pages + same_stats.zero_pages_skipped, src.memory().page_count());

  // The walker's code lies in the first MiB: its first page is in the first batch. Write it
  // once copied: the round carries the old bytes, the next round the new ones.
  const uint64_t first_page = src.memory().base();
  std::vector<uint8_t> before(vmm::kPageSize), after(vmm::kPageSize);
  ASSERT_TRUE(src.memory().read(first_page, before));
  const auto [full, full_stats] = pipelined(Kind::Full, 64 << 10, [&] { scribble(src, 0, vmm::kPageSize, 33); });
  ASSERT_TRUE(src.memory().read(first_page, after));
  ASSERT_NE(before, after);
  Machine dst(config(32), wb);
  for (const std::string& part : full) checkpoint::apply(dst, part);
  std::vector<uint8_t> copied(vmm::kPageSize);
  ASSERT_TRUE(dst.memory().read(first_page, copied));
  EXPECT_EQ(copied, before);

  const auto [next, next_stats] = pipelined(Kind::Incremental, 64 << 10, [] {});
  EXPECT_GE(next_stats.pages, 1u);
  EXPECT_LT(next_stats.pages, full_stats.pages);
  for (const std::string& part : next) checkpoint::apply(dst, part);
  checkpoint::apply(dst, write_incremental(src, options()));
  ASSERT_TRUE(dst.memory().read(first_page, copied));
  EXPECT_EQ(copied, after);
  EXPECT_EQ(dst.state_hash(), src.state_hash());
}

#ifdef TANDEM_GUEST_DIR
// The kv guest keeps its store on virtio-blk: SYNC writes disk blocks. The destination
// starts from a zeroed (or stale) image of the same size and must end byte-identical.
class DiskCheckpointTest : public CheckpointTest {
 protected:
  // Not a multiple of 4 KiB: the last disk block is short.
  static constexpr size_t kDiskBytes = (1u << 20) + 3 * 512;
  static std::string kv() { return std::string(TANDEM_GUEST_DIR) + "/kv.elf"; }

  // Feeds a script and runs until the guest waits for more input.
  static void converse(Machine& m, ScriptWorld& w, const std::string& script) {
    w.queue_input(script);
    const auto r = m.run_until(m.icount() + 200'000'000);
    ASSERT_EQ(r.exit, Exit::Idle) << "kv should wait for input";
  }
  static std::string sets(int from, int to) {
    std::string s;
    for (int i = from; i < to; ++i) s += "SET key" + std::to_string(i) + " value-" + std::to_string(i * 7919) + "\n";
    return s;
  }

  // A zeroed source disk, and a destination holding a stale store from an earlier life: a
  // full checkpoint must overwrite or zero every block of it.
  static void write_zeroed_and_stale_disks(const std::string& src_disk, const std::string& dst_disk) {
    testing::write_file(src_disk, std::vector<uint8_t>(kDiskBytes, 0));
    std::vector<uint8_t> stale(kDiskBytes);
    for (size_t i = 0; i < stale.size(); ++i) stale[i] = static_cast<uint8_t>(i * 31 + 7);
    testing::write_file(dst_disk, stale);
  }
};

TEST_P(DiskCheckpointTest, KvStoreAndDiskSurviveFullIncrementalsAndFinal) {
  const std::string src_disk = path("src.img"), dst_disk = path("dst.img");
  write_zeroed_and_stale_disks(src_disk, dst_disk);

  ScriptWorld wa, wb;
  Machine src(config(32, src_disk), wa);
  src.load(kv());
  converse(src, wa, sets(0, 20) + "SYNC\n");
  Machine dst(config(32, dst_disk), wb);
  Stats full_stats;
  checkpoint::apply(dst, write_full(src, options(), &full_stats));
  EXPECT_GT(full_stats.disk_blocks, 0u);
  EXPECT_EQ(dst.state_hash(), src.state_hash());
  EXPECT_EQ(testing::read_file(dst_disk), testing::read_file(src_disk));

  Options round = options();
  round.include_core = false;
  converse(src, wa, sets(20, 60) + "DEL key3\nSYNC\n");
  Stats s;
  checkpoint::apply(dst, write_incremental(src, round, &s));
  EXPECT_GT(s.disk_blocks, 0u);
  EXPECT_LT(s.disk_blocks, full_stats.disk_blocks + 10);
  converse(src, wa, sets(60, 90) + "SYNC\nSET late 1\n");
  checkpoint::apply(dst, write_incremental(src, options(), &s));
  EXPECT_EQ(dst.state_hash(), src.state_hash());
  EXPECT_EQ(testing::read_file(dst_disk), testing::read_file(src_disk));

  // Both answer the same, including the unsynced key, and keep writing the same disk.
  wa.printed.clear();
  converse(src, wa, "GET key3\nGET key42\nGET late\nCOUNT\nSYNC\n");
  converse(dst, wb, "GET key3\nGET key42\nGET late\nCOUNT\nSYNC\n");
  EXPECT_EQ(wb.printed, wa.printed);
  EXPECT_NE(wa.printed.find("value-" + std::to_string(42 * 7919)), std::string::npos) << wa.printed;
  EXPECT_EQ(dst.state_hash(), src.state_hash());
  EXPECT_EQ(testing::read_file(dst_disk), testing::read_file(src_disk));
}

// Parts of a full round zero the blocks they do not carry as data: a stale destination
// disk ends byte-identical.
TEST_P(DiskCheckpointTest, PartedFullRoundDefinesTheWholeDisk) {
  const std::string src_disk = path("src.img"), dst_disk = path("dst.img");
  write_zeroed_and_stale_disks(src_disk, dst_disk);
  ScriptWorld wa, wb;
  Machine src(config(32, src_disk), wa);
  src.load(kv());
  converse(src, wa, sets(0, 40) + "SYNC\n");
  Machine dst(config(32, dst_disk), wb);
  size_t parts = 0;
  const Stats s = write_full_parts(src, 8 << 10, [&](std::string&& p) { checkpoint::apply(dst, p), ++parts; },
                                   options());
  EXPECT_GT(s.disk_blocks, 0u);
  EXPECT_GT(parts, 1u);
  checkpoint::apply(dst, write_incremental(src, options()));
  EXPECT_EQ(dst.state_hash(), src.state_hash());
  EXPECT_EQ(testing::read_file(dst_disk), testing::read_file(src_disk));
}

TEST_P(DiskCheckpointTest, DiskSizeMismatchIsRefusedBeforeAnythingChanges) {
  const std::string src_disk = path("src.img"), small = path("small.img");
  testing::write_file(src_disk, std::vector<uint8_t>(kDiskBytes, 0));
  testing::write_file(small, std::vector<uint8_t>(kDiskBytes - 512, 0));
  ScriptWorld wa, wb, wc;
  Machine src(config(32, src_disk), wa);
  src.load(kv());
  converse(src, wa, sets(0, 5) + "SYNC\n");
  const std::string stream = write_full(src, options());

  Machine no_disk(config(32), wb);
  const uint64_t before = no_disk.state_hash();
  try {
    checkpoint::apply(no_disk, stream);
    FAIL() << "applied a disk checkpoint to a machine without a disk";
  } catch (const CheckpointError& e) {
    EXPECT_NE(std::string(e.what()).find("disk"), std::string::npos) << e.what();
  }
  EXPECT_EQ(no_disk.state_hash(), before);

  Machine wrong(config(32, small), wc);
  EXPECT_THROW(checkpoint::apply(wrong, stream), CheckpointError);
  EXPECT_EQ(testing::read_file(small), std::string(kDiskBytes - 512, '\0'));
}
INSTANTIATE_TEST_SUITE_P(Codecs, DiskCheckpointTest,
                         ::testing::Values(Compression::None, Compression::Lz4, Compression::Zstd),
                         [](const auto& info) { return std::string(to_string(info.param)); });
#endif

INSTANTIATE_TEST_SUITE_P(Codecs, CheckpointTest,
                         ::testing::Values(Compression::None, Compression::Lz4, Compression::Zstd),
                         [](const auto& info) { return std::string(to_string(info.param)); });

}  // namespace
}  // namespace tandem::checkpoint
