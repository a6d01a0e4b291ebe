// Checkpoint throughput and stream sizes. A 256 MiB machine whose RAM has 64 MiB of touched
// pages (filled host-side, like device DMA, with a mix a real guest has: code-like and
// text-like pages, sparse data, incompressible pages) is checkpointed with each codec;
// the stream is applied to a second machine (and its state hash checked); then 1% of the
// pages change and an incremental is taken. MB/s are of touched RAM per second. Last, the
// audit state hash from scratch against its page-hash cache.
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "vmm/machine.h"

namespace {

using tandem::checkpoint::Compression;
using tandem::checkpoint::Options;
using tandem::checkpoint::Stats;
using tandem::vmm::kPageSize;

struct NullWorld final : tandem::vmm::World {
  uint64_t next_service_icount(uint64_t) override { return UINT64_MAX; }
  void service(tandem::vmm::Machine&) override {}
  bool idle(tandem::vmm::Machine&, uint64_t) override { return false; }
  void output(tandem::vmm::OutputChannel, uint64_t, std::span<const uint8_t>) override {}
  void entropy(uint64_t, std::span<uint8_t>) override {}
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Page `p` of the mix: 1/4 incompressible, 1/4 text-like, 1/4 sparse words, 1/4 small
// structures (mostly zero).
void fill_page(std::mt19937_64& rng, uint64_t p, std::vector<uint8_t>& page, bool all_random) {
  std::fill(page.begin(), page.end(), 0);
  const unsigned kind = all_random ? 0 : p % 4;
  switch (kind) {
    case 0:
      for (size_t i = 0; i < page.size(); i += 8) {
        const uint64_t v = rng();
        std::memcpy(&page[i], &v, 8);
      }
      break;
    case 1: {
      static const char words[] = "the quick brown fox jumps over the lazy dog SET key value OK ";
      for (size_t i = 0; i < page.size(); ++i) page[i] = static_cast<uint8_t>(words[(i * 7 + rng() % 3) % (sizeof words - 1)]);
      break;
    }
    case 2:
      for (size_t i = 0; i < page.size(); i += 64) {
        const uint64_t v = rng() & 0xffff'ffff;
        std::memcpy(&page[i], &v, 8);
      }
      break;
    default:
      for (size_t i = 0; i < 256; i += 8) {
        const uint64_t v = 0x8000'0000 + (rng() & 0xfff8);
        std::memcpy(&page[i], &v, 8);
      }
  }
}

void fill(tandem::vmm::Machine& m, uint64_t bytes, bool all_random, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> page(kPageSize);
  for (uint64_t p = 0; p < bytes / kPageSize; ++p) {
    fill_page(rng, p, page, all_random);
    m.memory().write(m.memory().base() + p * kPageSize, page);
  }
}

void run_case(const char* content, bool all_random, Compression c) {
  constexpr uint64_t kMem = uint64_t{256} << 20, kTouched = uint64_t{64} << 20;
  NullWorld w1, w2;
  tandem::vmm::MachineConfig config;
  config.mem_bytes = kMem;
  tandem::vmm::Machine src(config, w1), dst(config, w2);
  fill(src, kTouched, all_random, 42);
  Options o;
  o.compression = c;
  Stats s;
  // Best of 3: the machine is shared with other work.
  double best_write = 1e9, best_stream = 1e9, best_apply = 1e9;
  std::string stream;
  for (int i = 0; i < 3; ++i) {
    // Chunked to a sink (as to a socket or file): no stream-sized buffer.
    auto t = std::chrono::steady_clock::now();
    uint64_t sent = 0;
    tandem::checkpoint::write_full(src, [&sent](std::string_view c) { sent += c.size(); }, o);
    best_stream = std::min(best_stream, seconds_since(t));
    // Into one string: includes faulting in a stream-sized buffer.
    t = std::chrono::steady_clock::now();
    stream = tandem::checkpoint::write_full(src, o, &s);
    best_write = std::min(best_write, seconds_since(t));
    t = std::chrono::steady_clock::now();
    tandem::checkpoint::apply(dst, stream);
    best_apply = std::min(best_apply, seconds_since(t));
  }
  const bool same = dst.state_hash() == src.state_hash();

  // 1% of the touched pages change; the incremental carries them and the core state.
  std::mt19937_64 rng(7);
  std::vector<uint8_t> page(kPageSize);
  const uint64_t pages = kTouched / kPageSize;
  for (uint64_t i = 0; i < pages / 100; ++i) {
    const uint64_t p = rng() % pages;
    fill_page(rng, p, page, all_random);
    src.memory().write(src.memory().base() + p * kPageSize, page);
  }
  Stats si;
  auto t = std::chrono::steady_clock::now();
  const std::string inc = tandem::checkpoint::write_incremental(src, o, &si);
  const double inc_s = seconds_since(t);
  tandem::checkpoint::apply(dst, inc);
  const bool same_after = dst.state_hash() == src.state_hash();

  const double mib = static_cast<double>(kTouched) / (1 << 20);
  std::printf("%-7s %-5s  full: %5.1f MiB stream (%3.0f%%)  to sink %5.0f MB/s  to string %5.0f MB/s  apply %5.0f MB/s  %s | "
              "1%% incremental: %6.2f MiB in %5.1f ms  %s\n",
              content, tandem::checkpoint::to_string(c), static_cast<double>(s.stream_bytes) / (1 << 20),
              100.0 * static_cast<double>(s.stream_bytes) / static_cast<double>(kTouched), mib * 1.048576 / best_stream,
              mib * 1.048576 / best_write,
              mib * 1.048576 / best_apply, same ? "hash ok" : "HASH MISMATCH",
              static_cast<double>(si.stream_bytes) / (1 << 20), inc_s * 1e3, same_after ? "hash ok" : "HASH MISMATCH");
}

// The audit's Machine::state_hash() on a 256 MiB machine with 244 MiB of incompressible
// touched RAM (bench/pair's memfill): from scratch (what every audit cost before the page
// hash cache) against the cached hash after 4 MiB (memfill's working set) or nothing changed.
void state_hash_case() {
  constexpr uint64_t kMem = uint64_t{256} << 20, kTouched = uint64_t{244} << 20, kWorkingSet = uint64_t{4} << 20;
  NullWorld w;
  tandem::vmm::MachineConfig config;
  config.mem_bytes = kMem;
  tandem::vmm::Machine m(config, w);
  fill(m, kTouched, true, 3);
  double scratch = 1e9, working_set = 1e9, unchanged = 1e9;
  std::mt19937_64 rng(11);
  std::vector<uint8_t> page(kPageSize);
  bool agree = true;
  for (int i = 0; i < 3; ++i) {
    auto t = std::chrono::steady_clock::now();
    const uint64_t full = m.state_hash_uncached();
    scratch = std::min(scratch, seconds_since(t));
    agree = agree && m.state_hash() == full;
    for (uint64_t p = 0; p < kWorkingSet / kPageSize; ++p) {
      fill_page(rng, p, page, true);
      m.memory().write(m.memory().base() + (uint64_t{8} << 20) + p * kPageSize, page);
    }
    t = std::chrono::steady_clock::now();
    const uint64_t after_writes = m.state_hash();
    working_set = std::min(working_set, seconds_since(t));
    t = std::chrono::steady_clock::now();
    agree = agree && m.state_hash() == after_writes;
    unchanged = std::min(unchanged, seconds_since(t));
  }
  std::printf("state hash, 256 MiB machine, 244 MiB touched (best of 3): from scratch %.1f ms | cached, 4 MiB "
              "written since: %.2f ms | cached, nothing written: %.2f ms  %s\n",
              scratch * 1e3, working_set * 1e3, unchanged * 1e3, agree ? "hash ok" : "HASH MISMATCH");
}

}  // namespace

int main() {
  std::printf("checkpoint: 256 MiB machine, 64 MiB touched; MB/s of touched RAM (best of 3)\n");
  for (Compression c : {Compression::Lz4, Compression::Zstd, Compression::None}) run_case("mixed", false, c);
  for (Compression c : {Compression::Lz4, Compression::Zstd}) run_case("random", true, c);

  // A big guest that touched little: the zero pages cost nothing.
  NullWorld w;
  tandem::vmm::MachineConfig config;
  config.mem_bytes = uint64_t{1} << 30;
  tandem::vmm::Machine big(config, w);
  fill(big, uint64_t{1} << 20, false, 1);
  Stats s;
  const auto t = std::chrono::steady_clock::now();
  tandem::checkpoint::write_full(big, {}, &s);
  std::printf("1 GiB machine, 1 MiB touched: %llu pages carried, %llu zero pages elided, stream %.1f KiB, %.1f ms\n",
              static_cast<unsigned long long>(s.pages), static_cast<unsigned long long>(s.zero_pages_skipped),
              static_cast<double>(s.stream_bytes) / 1024, seconds_since(t) * 1e3);
  state_hash_case();
  return 0;
}
