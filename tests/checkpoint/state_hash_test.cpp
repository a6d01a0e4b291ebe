// The incremental state hash: Machine::state_hash() caches one XXH3 per RAM page and
// rehashes only pages written since the previous call. After random run slices of real
// guests (CPU stores through the fast-path store TLB, virtio-blk DMA, loaders), snapshot
// restores, checkpoint applies, direct device-style writes and checkpoint dirty-bitmap
// takes, it must equal the same hash computed from scratch (state_hash_uncached()), and the
// disk's cached content hash must equal its from-scratch value (content_hash_uncached()).
// Lives with the checkpoint tests because it applies checkpoints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <sstream>

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

class StateHashTest : public ::testing::Test {
 protected:
  std::string path(const std::string& name) const { return (dir_.path() / name).string(); }

  static MachineConfig config(const std::string& disk = {}) {
    MachineConfig c;
    c.mem_bytes = 32u << 20;
    c.disk_path = disk;
    return c;
  }

  // Both ways of computing the hash agree; returns the hash. The state hash holds the
  // disk's cached content hash, so that one is compared with a from-scratch read too.
  static uint64_t checked_hash(Machine& m, const std::string& where) {
    const uint64_t incremental = m.state_hash();
    const uint64_t scratch = m.state_hash_uncached();
    EXPECT_EQ(incremental, scratch) << where << " at icount " << m.icount();
    if (const vmm::DiskImage* disk = m.board().disk()) {
      EXPECT_EQ(disk->content_hash(), disk->content_hash_uncached()) << where << ": disk, at icount " << m.icount();
    }
    return incremental;
  }

  // Runs `m` in random slices, checking the hash after each, and now and then: takes the
  // checkpoint dirty bitmap (as checkpoint/ does), writes random bytes the way a device
  // does (DMA), or rolls back to an earlier snapshot of itself (restore must invalidate
  // the cache: the restored pages were written behind the CPU's back). No rollbacks for
  // guests with a disk: a snapshot only restores onto the disk it was taken with.
  void random_slices(Machine& m, uint32_t seed, int slices, uint64_t max_slice, bool rollbacks = true) {
    std::mt19937_64 rng(seed);
    std::string snapshot;
    uint64_t snapshot_hash = 0;
    for (int i = 0; i < slices; ++i) {
      const auto r = m.run_until(m.icount() + 1 + rng() % max_slice);
      const uint64_t hash = checked_hash(m, "after a slice");
      switch (rng() % 6) {
        case 0:
          (void)m.take_dirty_bitmap();
          break;
        case 1: {
          std::vector<uint8_t> bytes(1 + rng() % 9000);
          for (auto& b : bytes) b = static_cast<uint8_t>(rng());
          // In [RAM/4, RAM/2): away from the guest's image, stack and device tree.
          const uint64_t quarter = m.memory().size() / 4;
          const uint64_t at = m.memory().base() + quarter + rng() % (quarter - bytes.size());
          ASSERT_TRUE(m.memory().write(at, bytes));
          EXPECT_NE(checked_hash(m, "after a device write"), hash);
          break;
        }
        case 2: {
          std::ostringstream out;
          m.save(out);
          snapshot = out.str();
          snapshot_hash = hash;
          break;
        }
        case 3:
          if (rollbacks && !snapshot.empty()) {
            std::istringstream in(snapshot);
            m.restore(in);
            EXPECT_EQ(checked_hash(m, "after a rollback"), snapshot_hash);
          }
          break;
        default:
          break;
      }
      if (r.exit != Exit::Running && r.exit != Exit::Idle) break;
    }
  }

  test::ScratchDir dir_{"tandem_state_hash_test_"};
};

// A tight store loop: its stores go through the host-pointer store TLB, which skips the
// marking once a page is marked. Hashing clears the hash-dirty marks, so the TLB must
// mark again afterwards, or the next hash would miss the later stores.
TEST_F(StateHashTest, WalkerStoresAfterEachHashAreSeen) {
  const std::string image = path("walker.bin");
  testing::write_file(image, testing::walker_image(256u << 10));
  ScriptWorld w;
  Machine m(config(), w);
  m.load(image);
  uint64_t previous = checked_hash(m, "after load");
  for (int i = 0; i < 40; ++i) {
    m.run_until(m.icount() + 997 + static_cast<uint64_t>(i) * 131);
    const uint64_t hash = checked_hash(m, "walker slice");
    EXPECT_NE(hash, previous) << "the walker stores every few instructions";
    previous = hash;
  }
  random_slices(m, 1, 60, 20'000);
}

TEST_F(StateHashTest, HashIsAPureFunctionOfTheState) {
  const std::string image = path("walker.bin");
  testing::write_file(image, testing::walker_image(1u << 20));
  ScriptWorld wa, wb;
  Machine a(config(), wa), b(config(), wb);
  a.load(image);
  b.load(image);
  // a hashes often (a warm cache), b only at the end (a cold one).
  for (int i = 0; i < 25; ++i) {
    a.run_until(a.icount() + 10'007);
    checked_hash(a, "a");
  }
  b.run_until(a.icount());
  EXPECT_EQ(a.state_hash(), b.state_hash());
  // A page written back to zero is left out, as if never touched.
  const std::vector<uint8_t> zeros(vmm::kPageSize, 0);
  ASSERT_TRUE(a.memory().write(a.memory().base() + (16u << 20), std::vector<uint8_t>(vmm::kPageSize, 0x5a)));
  EXPECT_NE(checked_hash(a, "page set"), b.state_hash());
  ASSERT_TRUE(a.memory().write(a.memory().base() + (16u << 20), zeros));
  EXPECT_EQ(checked_hash(a, "page zeroed"), b.state_hash());
}

#ifdef TANDEM_GUEST_DIR
std::string guest(const std::string& name) { return std::string(TANDEM_GUEST_DIR) + "/" + name + ".elf"; }

// The pattern tests/guests/run_guest.py writes for the virtio_blk guest.
std::vector<uint8_t> disk_pattern(size_t size) {
  std::vector<uint8_t> data(size);
  for (size_t off = 0; off < size; ++off) data[off] = static_cast<uint8_t>(off * 7 + (off >> 9) * 13);
  for (size_t sector = 0; sector < size / 512; ++sector) {
    for (size_t i = 0; i < 4; ++i) data[sector * 512 + i] = static_cast<uint8_t>(sector >> (8 * i));
  }
  return data;
}

// virtio_blk reads sectors into RAM by DMA (GuestMemory::write), not through the CPU.
TEST_F(StateHashTest, VirtioBlkDmaIsSeen) {
  const std::string disk = path("disk.img");
  for (uint32_t seed = 0; seed < 4; ++seed) {
    testing::write_file(disk, disk_pattern(1u << 20));  // the guest writes sector 1
    ScriptWorld w;
    Machine m(config(disk), w);
    m.load(guest("virtio_blk"));
    random_slices(m, seed, 200, 3'000, /*rollbacks=*/false);
    const auto r = m.run_until(m.icount() + 50'000'000);
    EXPECT_EQ(r.exit, Exit::GuestPass) << "code " << r.code << ", output: " << w.printed;
    checked_hash(m, "virtio_blk end");
  }
}

TEST_F(StateHashTest, MixGuestWithConsoleInput) {
  for (uint32_t seed = 0; seed < 3; ++seed) {
    ScriptWorld w;
    w.queue_input("first line\nsecond\nquit\n");
    Machine m(config(), w);
    m.load(guest("mix"));
    random_slices(m, 100 + seed, 150, 40'000);
    checked_hash(m, "mix end");
  }
}

// kv keeps its store on virtio-blk (DMA both ways). Checkpoint apply writes RAM behind
// the destination's back, into a machine whose cache is warm from its own earlier run.
TEST_F(StateHashTest, KvAndCheckpointApplyIntoAWarmCache) {
  const std::string src_disk = path("src.img"), dst_disk = path("dst.img");
  testing::write_file(src_disk, std::vector<uint8_t>(1u << 20, 0));
  testing::write_file(dst_disk, std::vector<uint8_t>(1u << 20, 0));
  ScriptWorld wa, wb;
  Machine src(config(src_disk), wa), dst(config(dst_disk), wb);
  src.load(guest("kv"));
  dst.load(guest("kv"));
  std::string script;
  for (int i = 0; i < 30; ++i) script += "SET key" + std::to_string(i) + " v" + std::to_string(i * 7919) + "\n";
  wa.queue_input(script + "SYNC\n");
  wb.queue_input("SET other 1\nSYNC\n");
  random_slices(src, 7, 120, 60'000, /*rollbacks=*/false);
  random_slices(dst, 8, 40, 60'000, /*rollbacks=*/false);
  checked_hash(dst, "dst warm");

  checkpoint::apply(dst, write_full(src));
  EXPECT_EQ(checked_hash(dst, "after a full apply"), checked_hash(src, "src"));
  wa.queue_input("SET late 2\nDEL key3\nSYNC\n");
  src.run_until(src.icount() + 5'000'000);
  checkpoint::apply(dst, write_incremental(src));
  EXPECT_EQ(checked_hash(dst, "after an incremental apply"), checked_hash(src, "src"));
}
#endif

}  // namespace
}  // namespace tandem::checkpoint
