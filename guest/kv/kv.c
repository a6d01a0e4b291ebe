// tandem-kv: a key-value store driven by a line protocol on the console (see README):
//   SET k v -> OK | GET k -> value | NOT_FOUND | DEL k -> OK | NOT_FOUND | SYNC -> OK |
//   COUNT -> n | QUIT -> BYE (then exit pass) | anything else -> ERR <reason>
// One reply line per command line. Input arrives by UART receive interrupts (PLIC source
// 10, context 0) into a ring; the main loop sleeps in WFI whenever the ring is empty, so an
// idle store costs no instructions (the event log then records idle skips, not a spin).
#include "guest.h"
#include "kv.h"

#define PLIC_PRIORITY(src) (PLIC_BASE + 4 * (src))
#define PLIC_ENABLE_CTX0 (PLIC_BASE + 0x2000)
#define PLIC_THRESHOLD_CTX0 (PLIC_BASE + 0x200000)
#define PLIC_CLAIM_CTX0 (PLIC_BASE + 0x200004)
#define UART_IER 1
#define UART_IER_RX 0x01

#define LINE_MAX 256          // "SET " + 32-byte key + " " + 200-byte value fits
#define RX_RING 4096          // power of two
#define TOMBSTONE_LIMIT (KV_SLOTS / 4)

// ---- interrupt-driven input ----
// Single producer (the trap handler) and single consumer (main) on one hart: the indices
// only need to be volatile, each side writes just its own.
static volatile uint8_t rx_ring[RX_RING];
static volatile uint32_t rx_head, rx_tail;  // head: next write (handler), tail: next read
static volatile int rx_paused;              // the ring filled up: RX interrupts are off

static void uart_set_ier(uint8_t v) { mmio_write8(UART0_BASE + UART_IER, v); }

static void drain_uart(void) {
  while (rx_head - rx_tail < RX_RING) {
    int c = uart_getc_nonblocking();
    if (c < 0) return;
    rx_ring[rx_head % RX_RING] = (uint8_t)c;
    __asm__ volatile("" ::: "memory");  // the byte before the index that publishes it
    rx_head++;
  }
  // Ring full: leave the rest in the UART (its FIFO pushes back on the sender) and stop
  // the level-triggered interrupt until main has made room.
  rx_paused = 1;
  uart_set_ier(0);
}

void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause != (CAUSE_INTERRUPT | IRQ_M_EXT)) {
    printf("ERR internal trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
    guest_exit(0x7e);
  }
  uint32_t source = mmio_read32(PLIC_CLAIM_CTX0);
  if (source == UART0_IRQ) drain_uart();
  if (source) mmio_write32(PLIC_CLAIM_CTX0, source);  // complete
}

static void enable_rx_interrupts(void) {
  mmio_write32(PLIC_PRIORITY(UART0_IRQ), 1);
  mmio_write32(PLIC_ENABLE_CTX0, 1u << UART0_IRQ);
  mmio_write32(PLIC_THRESHOLD_CTX0, 0);
  uart_set_ier(UART_IER_RX);
  csr_set(mie, 1UL << IRQ_M_EXT);
  csr_set(mstatus, MSTATUS_MIE);
}

// Next input byte; sleeps in WFI while there is none.
static uint8_t next_byte(void) {
  for (;;) {
    if (rx_tail != rx_head) {
      uint8_t c = rx_ring[rx_tail % RX_RING];
      __asm__ volatile("" ::: "memory");
      rx_tail++;
      return c;
    }
    // Interrupts off between the check and the WFI, or a byte arriving in between would
    // be noticed only at the next one. WFI still wakes on the pending interrupt.
    csr_clear(mstatus, MSTATUS_MIE);
    if (rx_paused) {
      rx_paused = 0;
      uart_set_ier(UART_IER_RX);
    }
    if (rx_tail == rx_head) __asm__ volatile("wfi");
    csr_set(mstatus, MSTATUS_MIE);
  }
}

// ---- the protocol ----
static int word_is(const char *p, size_t len, const char *word) {
  return len == strlen(word) && memcmp(p, word, len) == 0;
}

static void reply_value(const char *p, size_t len) {
  for (size_t i = 0; i < len; i++) uart_putc(p[i]);
  uart_putc('\n');
}

// Splits `line` at the first space: the command word, then `*rest` (after that space).
static size_t split_word(const char *line, size_t len, const char **rest, size_t *rest_len) {
  size_t n = 0;
  while (n < len && line[n] != ' ') n++;
  *rest = n < len ? line + n + 1 : line + len;
  *rest_len = n < len ? len - n - 1 : 0;
  return n;
}

// A GET/DEL argument: exactly one key. Returns the reason it is unusable, or NULL.
static const char *single_key(const char *arg, size_t len) {
  for (size_t i = 0; i < len; i++)
    if (arg[i] == ' ') return "expected one key";
  if (len > KV_KEY_MAX) return "key too long";
  if (!kv_key_valid(arg, len)) return "bad key";
  return 0;
}

static void handle_set(const char *arg, size_t len) {
  const char *value;
  size_t value_len;
  size_t key_len = split_word(arg, len, &value, &value_len);
  if (key_len == 0 || value == arg + len) {
    printf("ERR usage: SET key value\n");
  } else if (key_len > KV_KEY_MAX) {
    printf("ERR key too long\n");
  } else if (!kv_key_valid(arg, key_len)) {
    printf("ERR bad key\n");
  } else if (value_len == 0) {
    printf("ERR usage: SET key value\n");
  } else if (value_len > KV_VALUE_MAX) {
    printf("ERR value too long\n");
  } else if (!kv_value_valid(value, value_len)) {
    printf("ERR bad value\n");
  } else if (kv_put(arg, key_len, value, value_len) == KV_PUT_FULL) {
    printf("ERR full\n");
  } else {
    printf("OK\n");
  }
}

// Handles one complete line (without its newline). Returns 0 after QUIT.
static int handle_line(const char *line, size_t len) {
  if (len > 0 && line[len - 1] == '\r') len--;  // tolerate \r\n
  const char *arg;
  size_t arg_len;
  size_t cmd_len = split_word(line, len, &arg, &arg_len);
  int has_arg = cmd_len < len;  // a space followed the command word

  if (len == 0) {
    printf("ERR empty line\n");
  } else if (word_is(line, cmd_len, "SET")) {
    handle_set(arg, arg_len);
  } else if (word_is(line, cmd_len, "GET") || word_is(line, cmd_len, "DEL")) {
    const char *why = has_arg ? single_key(arg, arg_len) : "expected one key";
    if (why) {
      printf("ERR %s\n", why);
    } else if (line[0] == 'G') {
      const struct kv_entry *e = kv_get(arg, arg_len);
      if (e) reply_value(e->value, e->value_len);
      else printf("NOT_FOUND\n");
    } else if (kv_del(arg, arg_len)) {
      if (kv_tombstones() > TOMBSTONE_LIMIT) kv_compact();
      printf("OK\n");
    } else {
      printf("NOT_FOUND\n");
    }
  } else if (has_arg && (word_is(line, cmd_len, "SYNC") || word_is(line, cmd_len, "COUNT") ||
                         word_is(line, cmd_len, "QUIT"))) {
    printf("ERR unexpected argument\n");
  } else if (word_is(line, cmd_len, "SYNC")) {
    const char *err = kv_disk_sync();
    if (err) printf("ERR %s\n", err);
    else printf("OK\n");
  } else if (word_is(line, cmd_len, "COUNT")) {
    printf("%u\n", kv_count());
  } else if (word_is(line, cmd_len, "QUIT")) {
    printf("BYE\n");
    return 0;
  } else {
    printf("ERR unknown command\n");
  }
  return 1;
}

int main(void) {
  const char *note;
  kv_disk_open(&note);
  printf("tandem-kv ready keys=%u%s%s\n", kv_count(), *note ? " " : "", note);
  enable_rx_interrupts();

  static char line[LINE_MAX];
  size_t len = 0;
  int overlong = 0;  // the current line outgrew the buffer: its bytes are dropped
  for (;;) {
    uint8_t c = next_byte();
    if (c != '\n') {
      if (len < LINE_MAX) line[len++] = (char)c;
      else overlong = 1;
      continue;
    }
    if (overlong) {
      printf("ERR line too long\n");
    } else if (!handle_line(line, len)) {
      return 0;
    }
    len = 0;
    overlong = 0;
  }
}
