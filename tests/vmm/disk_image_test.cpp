// DiskImage's content hash: XXH3-64 over the array of per-64 KiB-block XXH3-64s, the block
// hashes cached and recomputed only for blocks written since the last hash. After random
// writes, on sparse images (holes are hashed without being read) and on a reopened image,
// it must equal the definition computed here from a copy of the bytes, and the
// from-scratch content_hash_uncached(). The checkpoint written-block bitmap is independent.
#include <gtest/gtest.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "tests/vmm/scratch_dir.h"
#include "vmm/devices/disk_image.h"

namespace tandem::vmm {
namespace {

constexpr uint64_t kHashBlock = DiskImage::kHashBlockBytes;

// The definition, from the bytes alone.
uint64_t expected_hash(const std::vector<uint8_t>& bytes) {
  std::vector<uint64_t> block_hashes;
  for (size_t at = 0; at < bytes.size(); at += kHashBlock) {
    block_hashes.push_back(XXH3_64bits(bytes.data() + at, std::min<size_t>(kHashBlock, bytes.size() - at)));
  }
  return XXH3_64bits(block_hashes.data(), block_hashes.size() * sizeof(uint64_t));
}

std::vector<uint8_t> random_bytes(std::mt19937_64& rng, size_t n) {
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

bool bit(const std::vector<uint64_t>& bits, uint64_t i) { return (bits[i >> 6] >> (i & 63)) & 1; }

class DiskImageTest : public ::testing::Test {
 protected:
  // A sparse file of `size` bytes (all holes) with `data` written at each offset.
  std::string sparse_file(const std::string& name, uint64_t size,
                          const std::vector<std::pair<uint64_t, std::vector<uint8_t>>>& data = {}) {
    const std::string file = (dir_.path() / name).string();
    std::ofstream(file, std::ios::binary | std::ios::trunc).close();
    std::filesystem::resize_file(file, size);
    std::fstream out(file, std::ios::binary | std::ios::in | std::ios::out);
    for (const auto& [offset, bytes] : data) {
      out.seekp(static_cast<std::streamoff>(offset));
      out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    }
    return file;
  }

  test::ScratchDir dir_{"tandem_disk_image_test_"};
};

TEST_F(DiskImageTest, RandomWritesKeepTheHashEqualToTheDefinition) {
  // Not a multiple of the hash block (nor of a sector): the last block is short.
  constexpr uint64_t kSize = 3 * kHashBlock * 5 + 12345;
  std::mt19937_64 rng(42);
  std::vector<uint8_t> mirror = random_bytes(rng, kSize);
  const std::string file = dir_.write("random.img", mirror);
  DiskImage disk(file);
  ASSERT_EQ(disk.size_bytes(), kSize);
  ASSERT_EQ(disk.content_hash(), expected_hash(mirror));

  for (int round = 0; round < 300; ++round) {
    const int writes = 1 + static_cast<int>(rng() % 4);
    for (int w = 0; w < writes; ++w) {
      // Small writes, block-straddling writes and ones that end exactly at the image's end.
      const size_t len = 1 + rng() % (rng() % 4 == 0 ? 3 * kHashBlock : 4096);
      const uint64_t offset = rng() % 8 == 0 ? kSize - len : rng() % (kSize - len + 1);
      const std::vector<uint8_t> bytes = random_bytes(rng, len);
      ASSERT_TRUE(disk.write(offset, bytes));
      std::copy(bytes.begin(), bytes.end(), mirror.begin() + static_cast<std::ptrdiff_t>(offset));
    }
    // Hashing only now and then: several writes between two hashes must all be seen.
    if (rng() % 3 != 0) {
      ASSERT_EQ(disk.content_hash(), expected_hash(mirror)) << "round " << round;
    }
  }
  EXPECT_EQ(disk.content_hash(), expected_hash(mirror));
  EXPECT_EQ(disk.content_hash_uncached(), expected_hash(mirror));
  // The same bytes, with identical content written again: the hash does not move.
  const uint64_t before = disk.content_hash();
  ASSERT_TRUE(disk.write(kHashBlock, {mirror.data() + kHashBlock, 100}));
  EXPECT_EQ(disk.content_hash(), before);
}

TEST_F(DiskImageTest, AWriteThatChangesOneByteChangesTheHash) {
  std::vector<uint8_t> mirror(4 * kHashBlock, 0);
  DiskImage disk(dir_.write("one.img", mirror));
  const uint64_t zero = disk.content_hash();
  const uint8_t one = 1;
  for (const uint64_t offset : {uint64_t{0}, kHashBlock - 1, 2 * kHashBlock + 77, 4 * kHashBlock - 1}) {
    ASSERT_TRUE(disk.write(offset, {&one, 1}));
    mirror[offset] = 1;
    EXPECT_NE(disk.content_hash(), zero) << "byte " << offset;
    EXPECT_EQ(disk.content_hash(), expected_hash(mirror)) << "byte " << offset;
    const uint8_t zero_byte = 0;
    ASSERT_TRUE(disk.write(offset, {&zero_byte, 1}));
    mirror[offset] = 0;
    EXPECT_EQ(disk.content_hash(), zero) << "byte " << offset << " written back";
  }
}

// Holes are hashed as zeros from SEEK_DATA without reading them; data at the start, in the
// middle (not block-aligned) and in the short last block must still be read.
TEST_F(DiskImageTest, SparseImageHashesLikeItsBytes) {
  constexpr uint64_t kSize = (uint64_t{16} << 20) + 4096 + 512;
  std::mt19937_64 rng(7);
  const std::vector<std::pair<uint64_t, std::vector<uint8_t>>> data = {
      {0, random_bytes(rng, 5000)},
      {(uint64_t{6} << 20) + 1234, random_bytes(rng, 3 * kHashBlock)},
      {(uint64_t{11} << 20) - 10, random_bytes(rng, 20)},
      {kSize - 700, random_bytes(rng, 700)},
  };
  const std::string file = sparse_file("sparse.img", kSize, data);
  std::vector<uint8_t> mirror(kSize, 0);
  for (const auto& [offset, bytes] : data) std::copy(bytes.begin(), bytes.end(), mirror.begin() + static_cast<std::ptrdiff_t>(offset));

  DiskImage disk(file);
  EXPECT_EQ(disk.content_hash(), expected_hash(mirror));
  EXPECT_EQ(disk.content_hash_uncached(), expected_hash(mirror));
  // Writes into holes, then hashed again.
  for (const uint64_t offset : {uint64_t{3} << 20, (uint64_t{13} << 20) + kHashBlock - 3}) {
    const std::vector<uint8_t> bytes = random_bytes(rng, 9000);
    ASSERT_TRUE(disk.write(offset, bytes));
    std::copy(bytes.begin(), bytes.end(), mirror.begin() + static_cast<std::ptrdiff_t>(offset));
  }
  EXPECT_EQ(disk.content_hash(), expected_hash(mirror));
  // A wholly sparse image hashes like zeros, and the same as a dense image of zeros.
  DiskImage empty(sparse_file("holes.img", kSize));
  EXPECT_EQ(empty.content_hash(), expected_hash(std::vector<uint8_t>(kSize, 0)));
  EXPECT_EQ(empty.content_hash(), DiskImage(dir_.write("zeros.img", std::vector<uint8_t>(kSize, 0))).content_hash());
}

// The hash is a function of the bytes only: a fresh DiskImage (cold cache) on the same file
// agrees with the one that tracked the writes (warm cache).
TEST_F(DiskImageTest, ReopenedImageHashesTheSame) {
  std::mt19937_64 rng(3);
  const std::string file = sparse_file("reopen.img", 2u << 20);
  uint64_t warm = 0;
  {
    DiskImage disk(file);
    (void)disk.content_hash();
    for (int i = 0; i < 50; ++i) ASSERT_TRUE(disk.write(rng() % ((2u << 20) - 512), random_bytes(rng, 512)));
    warm = disk.content_hash();
  }
  EXPECT_EQ(DiskImage(file).content_hash(), warm);
}

// The checkpoint's written-block bitmap (4 KiB, taken by checkpoints) and the hash cache's
// marks (64 KiB, cleared by hashing) do not disturb each other.
TEST_F(DiskImageTest, WrittenBlockTrackingAndTheHashCacheAreIndependent) {
  std::vector<uint8_t> mirror(1u << 20, 0);
  DiskImage disk(dir_.write("tracking.img", mirror));
  (void)disk.take_written_blocks();
  const std::vector<uint8_t> bytes(100, 0xab);
  ASSERT_TRUE(disk.write(5 * 4096 + 4050, bytes));  // spans 4 KiB blocks 5 and 6
  std::copy(bytes.begin(), bytes.end(), mirror.begin() + 5 * 4096 + 4050);
  EXPECT_EQ(disk.content_hash(), expected_hash(mirror));  // clears the hash marks only
  std::vector<uint64_t> written = disk.take_written_blocks();
  for (uint64_t b = 0; b < disk.block_count(); ++b) EXPECT_EQ(bit(written, b), b == 5 || b == 6) << "block " << b;

  // Taking the written blocks before hashing does not hide the write from the hash.
  ASSERT_TRUE(disk.write(700'000, bytes));
  std::copy(bytes.begin(), bytes.end(), mirror.begin() + 700'000);
  (void)disk.take_written_blocks();
  EXPECT_EQ(disk.content_hash(), expected_hash(mirror));

  // mark_all_written (after a restore) marks every 4 KiB block and leaves the hash right.
  disk.mark_all_written();
  written = disk.take_written_blocks();
  for (uint64_t b = 0; b < disk.block_count(); ++b) EXPECT_TRUE(bit(written, b)) << "block " << b;
  EXPECT_EQ(disk.content_hash(), expected_hash(mirror));
}

TEST_F(DiskImageTest, AWriteOutsideTheImageIsRefusedAndChangesNothing) {
  const std::vector<uint8_t> mirror(3 * kHashBlock + 100, 0x11);
  DiskImage disk(dir_.write("bounds.img", mirror));
  const uint64_t before = disk.content_hash();
  const std::vector<uint8_t> bytes(200, 0x22);
  EXPECT_FALSE(disk.write(disk.size_bytes() - 100, bytes));
  EXPECT_FALSE(disk.write(UINT64_MAX - 50, bytes));
  EXPECT_EQ(disk.content_hash(), before);
  EXPECT_EQ(disk.content_hash_uncached(), expected_hash(mirror));
  const std::vector<uint64_t> written = disk.take_written_blocks();
  EXPECT_TRUE(std::all_of(written.begin(), written.end(), [](uint64_t w) { return w == 0; }));
}

TEST_F(DiskImageTest, AnEmptyImageHasTheHashOfNoBlocks) {
  DiskImage disk(dir_.write("empty.img", {}));
  EXPECT_EQ(disk.hash_block_count(), 0u);
  EXPECT_EQ(disk.content_hash(), expected_hash({}));
  EXPECT_EQ(disk.content_hash_uncached(), expected_hash({}));
}

}  // namespace
}  // namespace tandem::vmm
