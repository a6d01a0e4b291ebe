// The disk's content hash, as an audit pays for it, old against new in one run. Each case is
// a sparse image (a fresh filesystem: the first 8 MiB written, the rest holes) of 64 MiB and
// of 1 GiB. "old" is the previous DiskImage::content_hash(): XXH3 streamed over the whole
// file (1 MiB preads), redone after any write. "new" is DiskImage::content_hash(): cached
// XXH3 per 64 KiB block, only blocks written since the last hash reread, then XXH3 over the
// array of block hashes. "from scratch" is content_hash_uncached() (every byte read, no
// cache, no hole skipping): what the new scheme costs without its cache.
//
// Usage: disk_hash_bench [DIR] [--sizes-mib 64,1024]   (DIR defaults to $TMPDIR or /tmp)
#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "vmm/devices/disk_image.h"

namespace {

using tandem::vmm::DiskImage;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// The previous implementation, verbatim in substance: the whole file through one XXH3 state.
uint64_t old_whole_file_hash(const std::string& path, uint64_t size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  XXH3_state_t* state = XXH3_createState();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> chunk(1 << 20);
  for (uint64_t off = 0; off < size; off += chunk.size()) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk.size(), size - off));
    if (::pread(fd, chunk.data(), n, static_cast<off_t>(off)) != static_cast<ssize_t>(n)) std::memset(chunk.data(), 0, n);
    XXH3_64bits_update(state, chunk.data(), n);
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  ::close(fd);
  return digest;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::string human(double seconds) {
  char buf[32];
  if (seconds >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f s", seconds);
  } else if (seconds >= 1e-3) {
    std::snprintf(buf, sizeof buf, "%.1f ms", seconds * 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f us", seconds * 1e6);
  }
  return buf;
}

void run_case(const std::filesystem::path& dir, uint64_t size_mib) {
  const uint64_t size = size_mib << 20;
  const std::string path = (dir / ("tandem_disk_hash_bench_" + std::to_string(::getpid()) + ".img")).string();
  std::mt19937_64 rng(size_mib);
  {
    // Sparse: only the first 8 MiB are data (written with random bytes).
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      std::perror(path.c_str());
      std::exit(1);
    }
    std::vector<uint8_t> data(8u << 20);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    if (::pwrite(fd, data.data(), data.size(), 0) != static_cast<ssize_t>(data.size())) std::exit(1);
    ::close(fd);
  }

  DiskImage disk(path);
  auto t = Clock::now();
  (void)old_whole_file_hash(path, size);
  const double old_first = seconds_since(t);
  t = Clock::now();
  (void)disk.content_hash();
  const double new_first = seconds_since(t);
  t = Clock::now();
  (void)disk.content_hash_uncached();
  const double scratch_first = seconds_since(t);

  // An audit after a small guest write: 4 KiB at a random 512-byte-aligned offset.
  std::vector<uint8_t> block(4096);
  const auto small_write = [&] {
    for (auto& b : block) b = static_cast<uint8_t>(rng());
    if (!disk.write((rng() % ((size - block.size()) / 512)) * 512, block)) std::exit(1);
  };
  const int slow_runs = size_mib >= 512 ? 3 : 7;
  std::vector<double> old_audit, new_audit, scratch_audit;
  for (int i = 0; i < slow_runs; ++i) {
    small_write();
    t = Clock::now();
    (void)old_whole_file_hash(path, size);
    old_audit.push_back(seconds_since(t));
    t = Clock::now();
    (void)disk.content_hash_uncached();
    scratch_audit.push_back(seconds_since(t));
  }
  for (int i = 0; i < 2000; ++i) {
    small_write();
    t = Clock::now();
    (void)disk.content_hash();
    new_audit.push_back(seconds_since(t));
  }
  // The new scheme's floor: no write since the last hash (the cached value is returned).
  t = Clock::now();
  const uint64_t h = disk.content_hash();
  const double unchanged = seconds_since(t);
  if (h != disk.content_hash_uncached()) {
    std::printf("disk hash bench: cached and from-scratch hashes differ (%016llx)\n", static_cast<unsigned long long>(h));
    std::exit(1);
  }

  const double old_m = median(old_audit), new_m = median(new_audit);
  std::printf("%5llu MiB sparse (8 MiB data, %llu hash blocks, array %llu KiB)\n",
              static_cast<unsigned long long>(size_mib), static_cast<unsigned long long>(disk.hash_block_count()),
              static_cast<unsigned long long>(disk.hash_block_count() * 8 / 1024));
  std::printf("  first hash after open : old %-9s  new %-9s  from scratch %-9s  old/new %.0fx\n", human(old_first).c_str(),
              human(new_first).c_str(), human(scratch_first).c_str(), old_first / new_first);
  std::printf("  audit after a 4 KiB write (median): old %-9s  new %-9s  from scratch %-9s  old/new %.0fx\n",
              human(old_m).c_str(), human(new_m).c_str(), human(median(scratch_audit)).c_str(), old_m / new_m);
  std::printf("  audit with no write since the last: new %s\n", human(unchanged).c_str());
  std::filesystem::remove(path);
}

}  // namespace

int main(int argc, char** argv) {
  std::filesystem::path dir = std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp";
  std::vector<uint64_t> sizes = {64, 1024};
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--sizes-mib" && i + 1 < argc) {
      sizes.clear();
      std::stringstream in(argv[++i]);
      for (std::string s; std::getline(in, s, ',');) sizes.push_back(std::stoull(s));
    } else {
      dir = arg;
    }
  }
  std::printf("disk content hash per audit: old (whole image) vs new (64 KiB block-hash cache), same run\n");
  for (const uint64_t mib : sizes) run_case(dir, mib);
  return 0;
}
