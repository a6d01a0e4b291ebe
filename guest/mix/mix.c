// mix: every kind of non-deterministic input at once, for record/replay: CLINT timer
// interrupts at 1 kHz, entropy from a virtio-rng device (id 4), and console lines by UART
// receive interrupts. Each input line is echoed as `echo <line> ticks=<n>` followed by a
// fresh 8-byte rng draw in hex; the line `quit` ends the run (pass). The output depends on
// timing and entropy by design: a replay must reproduce whatever the recording saw. With
// no rng device (Tandem before it has one) the guest prints `rng: none` and carries on.
#include "guest.h"
#include "uart_rx.h"
#include "virtio.h"

#define TICKS_PER_MS 10000  // 10 MHz timebase: 1 kHz interrupts
#define LINE_MAX 128
#define BOOT_DRAW 16
#define LINE_DRAW 8
#define WARMUP_TICKS 10

static volatile uint64_t ticks;
static uint64_t deadline;

static struct virtio_dev rng;
static struct virtq rng_queue;
static uint8_t draw[BOOT_DRAW] __attribute__((aligned(16)));

static void set_mtimecmp(uint64_t v) { mmio_write64(CLINT_MTIMECMP0, v); }
void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause == (CAUSE_INTERRUPT | IRQ_M_TIMER)) {
    ticks++;
    deadline += TICKS_PER_MS;  // a fixed grid: late ticks do not stretch the period
    set_mtimecmp(deadline);
    return;
  }
  if (cause == (CAUSE_INTERRUPT | IRQ_M_EXT)) {
    uart_rx_interrupt();
    return;
  }
  printf("FAIL unexpected M trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
  guest_exit(0x7e);
}

// Prints one draw of `len` bytes as `rng: <hex>`, or says why there is none.
static void print_draw(uint32_t len) {
  if (!rng.base) return;
  long got = virtio_rng_read(&rng, &rng_queue, draw, len);
  if (got < 0) {
    printf("FAIL rng request failed\n");
    guest_exit(3);
  }
  printf("rng: %ld bytes ", got);
  uint8_t any = 0;
  for (long i = 0; i < got; i++) {
    printf("%02x", draw[i]);
    any |= draw[i];
  }
  printf("\n");
  // 16 zero bytes from a real entropy source: odds 2^-128. Zeros mean the device (or the
  // host side behind it) filled nothing in.
  if (len == BOOT_DRAW && got == BOOT_DRAW && !any) {
    printf("FAIL rng draw is all zero\n");
    guest_exit(4);
  }
}

static void open_rng(void) {
  if (!virtio_find(VIRTIO_ID_RNG, &rng)) {
    printf("rng: none\n");
    return;
  }
  const char *err = virtio_init_single_queue(&rng, &rng_queue);
  if (err) {
    printf("rng: unusable (%s)\n", err);
    rng.base = 0;
    return;
  }
  printf("rng: virtio-rng in slot %u\n", rng.slot);
  print_draw(BOOT_DRAW);
}

int main(void) {
  printf("mix: 1 kHz timer, virtio-rng, console lines (type quit to end)\n");
  open_rng();

  deadline = mmio_read64(CLINT_MTIME) + TICKS_PER_MS;
  set_mtimecmp(deadline);
  uart_rx_enable();
  csr_set(mie, 1UL << IRQ_M_TIMER);
  csr_set(mstatus, MSTATUS_MIE);
  // A few ticks before the first line is looked at, so even input that is all there at
  // boot arrives interleaved with timer interrupts.
  while (ticks < WARMUP_TICKS) __asm__ volatile("wfi");
  printf("timer: %u ticks\n", WARMUP_TICKS);

  static char line[LINE_MAX + 1];
  unsigned len = 0;
  for (;;) {
    uint8_t c = uart_rx_next_byte();  // WFI meanwhile: timer ticks keep coming
    if (c != '\n') {
      if (len < LINE_MAX) line[len++] = (char)c;  // longer lines are cut, not refused
      continue;
    }
    if (len > 0 && line[len - 1] == '\r') len--;
    line[len] = 0;
    uint64_t now = ticks;
    if (len == 4 && memcmp(line, "quit", 4) == 0) {
      printf("bye ticks=%lu\n", now);
      return 0;
    }
    printf("echo %s ticks=%lu\n", line, now);
    print_draw(LINE_DRAW);
    len = 0;
  }
}
