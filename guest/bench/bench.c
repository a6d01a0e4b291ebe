// bench: a CoreMark-style CPU workload for measuring the emulator. Each iteration does a
// linked-list build/search/reverse, an integer matrix multiply, a small sort, a CRC-32
// over a buffer and a byte-driven state machine, all folded into one checksum. The amount
// of work is fixed at compile time (BENCH_ITERATIONS), so every run executes the same
// instructions: `bench` is sized for ~2.5 billion, `bench_small` for ~20 million.
#include "guest.h"

#ifndef BENCH_ITERATIONS
#error "define BENCH_ITERATIONS"
#endif

#define LIST_NODES 64
#define MATRIX_N 12
#define SORT_N 48
#define BUF_BYTES 256

static uint32_t lcg_state = 12345;
static uint32_t lcg(void) {
  lcg_state = lcg_state * 1103515245u + 12345u;
  return lcg_state >> 8;
}

// ---- CRC-32 (bitwise, the way small firmware does it) ----
static uint32_t crc32_update(uint32_t crc, const uint8_t *p, unsigned n) {
  crc = ~crc;
  while (n--) {
    crc ^= *p++;
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
  }
  return ~crc;
}
static uint32_t crc32_word(uint32_t crc, uint32_t w) {
  uint8_t b[4] = {(uint8_t)w, (uint8_t)(w >> 8), (uint8_t)(w >> 16), (uint8_t)(w >> 24)};
  return crc32_update(crc, b, 4);
}

// ---- linked list ----
struct node {
  struct node *next;
  int32_t key;
  int32_t value;
};
static struct node nodes[LIST_NODES];

static uint32_t list_work(uint32_t seed) {
  struct node *head = 0;
  for (int i = 0; i < LIST_NODES; i++) {
    nodes[i].key = (int32_t)((seed + (uint32_t)i * 2654435761u) >> 20);
    nodes[i].value = i;
    // Keep the list sorted by key (insertion), a pointer-chasing workload.
    struct node **link = &head;
    while (*link && (*link)->key < nodes[i].key) link = &(*link)->next;
    nodes[i].next = *link;
    *link = &nodes[i];
  }
  uint32_t found = 0;
  for (int q = 0; q < 8; q++) {
    int32_t want = nodes[(seed + (uint32_t)q * 7) % LIST_NODES].key;
    for (struct node *n = head; n; n = n->next)
      if (n->key == want) {
        found += (uint32_t)n->value;
        break;
      }
  }
  struct node *reversed = 0;
  while (head) {
    struct node *next = head->next;
    head->next = reversed;
    reversed = head;
    head = next;
  }
  return found * 31u + (uint32_t)reversed->key;
}

// ---- matrix multiply ----
static int32_t mat_a[MATRIX_N][MATRIX_N], mat_b[MATRIX_N][MATRIX_N], mat_c[MATRIX_N][MATRIX_N];

static uint32_t matrix_work(uint32_t seed) {
  for (int i = 0; i < MATRIX_N; i++)
    for (int j = 0; j < MATRIX_N; j++) {
      mat_a[i][j] = (int32_t)((seed ^ (uint32_t)(i * 31 + j)) & 0xff) - 128;
      mat_b[i][j] = (int32_t)(((seed >> 3) + (uint32_t)(i + j * 17)) & 0x7f) - 64;
    }
  uint32_t sum = 0;
  for (int i = 0; i < MATRIX_N; i++)
    for (int j = 0; j < MATRIX_N; j++) {
      int32_t acc = 0;
      for (int k = 0; k < MATRIX_N; k++) acc += mat_a[i][k] * mat_b[k][j];
      mat_c[i][j] = acc;
      sum = sum * 3u + (uint32_t)acc;
    }
  // A division and a 64-bit multiply per row, to exercise the M extension beyond MUL.
  for (int i = 0; i < MATRIX_N; i++) {
    int64_t row = 0;
    for (int j = 0; j < MATRIX_N; j++) row += (int64_t)mat_c[i][j] * (j + 1);
    sum ^= (uint32_t)(row / (i + 3)) + (uint32_t)(row % 7);
  }
  return sum;
}

// ---- sort ----
static int32_t sort_data[SORT_N];

static uint32_t sort_work(void) {
  for (int i = 0; i < SORT_N; i++) sort_data[i] = (int32_t)(lcg() & 0xffff) - 0x8000;
  for (int i = 1; i < SORT_N; i++) {  // insertion sort
    int32_t v = sort_data[i];
    int j = i - 1;
    while (j >= 0 && sort_data[j] > v) {
      sort_data[j + 1] = sort_data[j];
      j--;
    }
    sort_data[j + 1] = v;
  }
  uint32_t ok = 1;
  for (int i = 1; i < SORT_N; i++) ok &= sort_data[i - 1] <= sort_data[i];
  return ok ? (uint32_t)sort_data[SORT_N / 2] : 0xdeadu;
}

// ---- byte-driven state machine (CoreMark's "core_state" in spirit) ----
static uint8_t text[BUF_BYTES];

static uint32_t state_work(uint32_t seed) {
  static const char alphabet[] = "0123456789+-.eE ,x";
  for (int i = 0; i < BUF_BYTES; i++) text[i] = (uint8_t)alphabet[(seed + (uint32_t)i * 13) % 18];
  enum { START, INT, FRAC, EXP, SCI, INVALID } state = START;
  uint32_t transitions[6] = {0};
  for (int i = 0; i < BUF_BYTES; i++) {
    uint8_t c = text[i];
    if (c == ',' || c == ' ') {
      transitions[state]++;
      state = START;
      continue;
    }
    switch (state) {
      case START:
        state = (c >= '0' && c <= '9') ? INT : (c == '+' || c == '-') ? INT : (c == '.') ? FRAC : INVALID;
        break;
      case INT:
        if (c == '.') state = FRAC;
        else if (c == 'e' || c == 'E') state = EXP;
        else if (!(c >= '0' && c <= '9')) state = INVALID;
        break;
      case FRAC:
        if (c == 'e' || c == 'E') state = EXP;
        else if (!(c >= '0' && c <= '9')) state = INVALID;
        break;
      case EXP:
        state = (c == '+' || c == '-' || (c >= '0' && c <= '9')) ? SCI : INVALID;
        break;
      case SCI:
        if (!(c >= '0' && c <= '9')) state = INVALID;
        break;
      case INVALID:
        break;
    }
  }
  uint32_t h = 0;
  for (int s = 0; s < 6; s++) h = h * 131u + transitions[s];
  return crc32_update(h, text, BUF_BYTES);
}

int main(void) {
  printf("bench: %u iterations\n", (unsigned)BENCH_ITERATIONS);
  uint32_t crc = 0;
  for (uint32_t it = 0; it < BENCH_ITERATIONS; it++) {
    uint32_t seed = lcg();
    crc = crc32_word(crc, list_work(seed));
    crc = crc32_word(crc, matrix_work(seed));
    crc = crc32_word(crc, sort_work());
    crc = crc32_word(crc, state_work(seed));
  }
  printf("bench: checksum 0x%08x\n", crc);
#ifdef BENCH_REPORT_MTIME
  // Calibration only: at 100 instructions per tick this approximates the instruction count.
  printf("bench: mtime %lu\n", mmio_read64(CLINT_MTIME));
#endif
  printf("bench: PASS\n");
  return 0;
}
