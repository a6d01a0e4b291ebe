// Raw frame sealing throughput on one core (net/aead.h): for each frame size the link sends
// (a small Ack or LogBatch, a 4 KiB page, a 1 MiB pre-copy chunk), seal and open as many
// frames as fit in a slice of this thread's CPU time, ChaCha20-Poly1305 and AES-256-GCM interleaved in the same
// run, several rounds; prints min/median/max of MB/s (and ns per frame for small frames).
//   aead_bench [--rounds N] [--slice-ms MS]
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "net/aead.h"

namespace {

using tandem::net::AeadCipher;

// This thread's CPU time: the host is shared, and per-core throughput is what we want (wall
// time on a loaded host measures the other tenants too).
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

struct Result {
  double seal_mbs, open_mbs, seal_ns;
};

Result measure(AeadCipher cipher, size_t size, double slice_s) {
  const std::string key(tandem::net::kAeadKeyBytes, '\x5a');
  tandem::net::Aead aead(cipher, key);
  std::string plain(size, '\x11'), buffer, opened;
  buffer.reserve(size + tandem::net::kAeadTagBytes);
  uint64_t n = 0;
  double start = cpu_seconds();
  double elapsed = 0;
  do {
    for (int i = 0; i < 16; ++i, ++n) {
      buffer.assign(plain);
      aead.seal(n, {}, buffer);
    }
    elapsed = cpu_seconds() - start;
  } while (elapsed < slice_s);
  Result r{};
  r.seal_mbs = n * size / elapsed / 1e6;
  r.seal_ns = elapsed / n * 1e9;
  // Open the last sealed frame repeatedly (same sequence number: the tag check is the work).
  const std::string sealed = buffer;
  const uint64_t seq = n - 1;
  uint64_t m = 0;
  start = cpu_seconds();
  do {
    for (int i = 0; i < 16; ++i, ++m) {
      if (!aead.open(seq, {}, sealed, opened)) {
        std::fprintf(stderr, "open failed\n");
        std::exit(1);
      }
    }
    elapsed = cpu_seconds() - start;
  } while (elapsed < slice_s);
  r.open_mbs = m * size / elapsed / 1e6;
  return r;
}

struct Stats {
  double min, median, max;
};
Stats stats(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v.front(), v[v.size() / 2], v.back()};
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  double slice_ms = 200;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::max(1, std::atoi(argv[i + 1]));
    else if (!std::strcmp(argv[i], "--slice-ms")) slice_ms = std::max(1.0, std::atof(argv[i + 1]));
  }
  const size_t sizes[] = {64, 512, 4096, 65536, 1u << 20};
  const AeadCipher ciphers[] = {AeadCipher::kChaCha20Poly1305, AeadCipher::kAes256Gcm};
  std::printf("AEAD frame sealing, one core (thread CPU time), %d rounds of %.0f ms per size and cipher (min/median/max)\n", rounds,
              slice_ms);
  std::printf("%-18s %8s  %-26s %-26s %-22s\n", "cipher", "frame", "seal MB/s", "open MB/s", "seal ns/frame");
  for (size_t size : sizes) {
    std::vector<double> seal[2], open[2], ns[2];
    for (int r = 0; r < rounds; ++r) {
      for (int c = 0; c < 2; ++c) {  // interleaved: both ciphers see the same load
        const Result res = measure(ciphers[c], size, slice_ms / 1000);
        seal[c].push_back(res.seal_mbs);
        open[c].push_back(res.open_mbs);
        ns[c].push_back(res.seal_ns);
      }
    }
    for (int c = 0; c < 2; ++c) {
      const Stats s = stats(seal[c]), o = stats(open[c]), t = stats(ns[c]);
      char a[64], b[64], d[64];
      std::snprintf(a, sizeof a, "%.0f/%.0f/%.0f", s.min, s.median, s.max);
      std::snprintf(b, sizeof b, "%.0f/%.0f/%.0f", o.min, o.median, o.max);
      std::snprintf(d, sizeof d, "%.0f/%.0f/%.0f", t.min, t.median, t.max);
      std::printf("%-18s %8zu  %-26s %-26s %-22s\n", std::string(tandem::net::cipher_name(ciphers[c])).c_str(), size, a,
                  b, d);
    }
  }
  return 0;
}
