// memfill: a guest whose memory is mostly incompressible data, for the live pair's
// initial sync (issue 6). It fills FILL_MIB MiB above its 4 MiB image with an xorshift64
// stream (neither lz4 nor zstd can shrink it, no page is zero), prints "memfill: ready",
// then keeps dirtying a WORK_KIB KiB working set forever, so a pre-copy has dirty pages
// to chase in every round. Console commands (one byte):
//   v  regenerates the stream and compares the whole fill region: "memfill: verify ok ..."
//      or "memfill: verify FAILED at byte N" (run on a promoted secondary, this proves the
//      region crossed the link intact)
//   s  "memfill: passes P" (working-set passes so far)
#include "guest.h"

#ifndef FILL_MIB
#error "define FILL_MIB"
#endif
#ifndef WORK_KIB
#define WORK_KIB 4096
#endif

// The image and its stack stay below 4 MiB (link.ld); the working set follows, then the fill.
#define WORK_BASE (RAM_BASE + (4UL << 20))
#define WORK_BYTES ((uint64_t)WORK_KIB << 10)
#define FILL_BASE (WORK_BASE + WORK_BYTES)
#define FILL_BYTES ((uint64_t)FILL_MIB << 20)
#define FILL_SEED 0x9e3779b97f4a7c15ULL

static inline uint64_t xorshift64(uint64_t x) {
  x ^= x << 13;
  x ^= x >> 7;
  x ^= x << 17;
  return x;
}

static void fill(void) {
  volatile uint64_t *p = (volatile uint64_t *)FILL_BASE;
  uint64_t x = FILL_SEED;
  for (uint64_t i = 0; i < FILL_BYTES / 8; i++) {
    x = xorshift64(x);
    p[i] = x;
  }
}

static void verify(void) {
  const volatile uint64_t *p = (const volatile uint64_t *)FILL_BASE;
  uint64_t x = FILL_SEED;
  for (uint64_t i = 0; i < FILL_BYTES / 8; i++) {
    x = xorshift64(x);
    if (p[i] != x) {
      printf("memfill: verify FAILED at byte %lu\n", (unsigned long)(i * 8));
      return;
    }
  }
  printf("memfill: verify ok %u MiB\n", (unsigned)FILL_MIB);
}

int main(void) {
  printf("memfill: filling %u MiB, working set %u KiB\n", (unsigned)FILL_MIB, (unsigned)WORK_KIB);
  fill();
  printf("memfill: ready\n");
  volatile uint64_t *work = (volatile uint64_t *)WORK_BASE;
  uint64_t passes = 0, x = 1;
  for (;;) {
    // One pass writes a word in every 512-byte step of the working set: every page dirty.
    for (uint64_t i = 0; i < WORK_BYTES / 8; i += 64) {
      x = xorshift64(x);
      work[i + (x & 63)] = x;
    }
    passes++;
    int c = uart_getc_nonblocking();
    if (c == 'v') verify();
    if (c == 's') printf("memfill: passes %lu\n", (unsigned long)passes);
  }
}
