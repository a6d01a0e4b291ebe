// plic_uart: external interrupts from the 16550 UART (source 10) through the PLIC.
// M-mode (context 0): threshold masking, the pending bit, claim/complete, an
// interrupt-driven transmit (THRE), then interrupt-driven receive of the bytes the test
// feeds on stdin. S-mode (context 1, SEIP delegated): one THRE interrupt claimed from S.
// Handlers only log what they claimed; main prints the log afterwards, so console output
// never interleaves with interrupt-driven output.
#include "guest.h"

#define PLIC_PRIORITY(src) (PLIC_BASE + 4 * (src))
#define PLIC_PENDING (PLIC_BASE + 0x1000)
#define PLIC_ENABLE(ctx) (PLIC_BASE + 0x2000 + 0x80 * (ctx))
#define PLIC_THRESHOLD(ctx) (PLIC_BASE + 0x200000 + 0x1000 * (ctx))
#define PLIC_CLAIM(ctx) (PLIC_BASE + 0x200004 + 0x1000 * (ctx))
#define CTX_M 0
#define CTX_S 1

#define UART_THR 0
#define UART_RBR 0
#define UART_IER 1
#define UART_IIR 2
#define UART_LSR 5
#define IER_RX 0x01
#define IER_THRE 0x02
#define IIR_ID_MASK 0x0f
#define IIR_NONE 0x01
#define IIR_THRE 0x02
#define IIR_RX 0x04

#define RX_EXPECTED "ping\n"
#define RX_LEN 5

static void uart_ier(uint8_t v) { mmio_write8(UART0_BASE + UART_IER, v); }

// Interrupt-driven transmit state.
static const char *tx_next;
static volatile int tx_active;
// Receive buffer.
static volatile char rx_buf[RX_LEN + 1];
static volatile unsigned rx_len;
// Claim log: what each interrupt claimed and what IIR said.
#define LOG_MAX 64
static volatile uint32_t log_source[LOG_MAX];
static volatile uint8_t log_iir[LOG_MAX];
static volatile unsigned log_len, m_irqs, s_irqs;

static void log_claim(uint32_t source, uint8_t iir) {
  if (log_len < LOG_MAX) {
    log_source[log_len] = source;
    log_iir[log_len] = iir;
  }
  log_len++;
}

// Services the UART for one claimed interrupt; shared by the M and S handlers.
static void service_uart(uint32_t source) {
  uint8_t iir = mmio_read8(UART0_BASE + UART_IIR) & IIR_ID_MASK;  // reading clears THRE
  log_claim(source, iir);
  if (source != UART0_IRQ) return;
  if (iir == IIR_RX) {
    // Drain whatever is there, so the result does not depend on FIFO depth.
    int c;
    while ((c = uart_getc_nonblocking()) >= 0) {
      if (rx_len < RX_LEN) rx_buf[rx_len++] = (char)c;
    }
  } else if (iir == IIR_THRE) {
    if (tx_active && *tx_next) {
      mmio_write8(UART0_BASE + UART_THR, (uint8_t)*tx_next++);
    } else {
      tx_active = 0;
      uart_ier(0);
    }
  }
}

void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause != (CAUSE_INTERRUPT | IRQ_M_EXT)) {
    printf("FAIL unexpected M trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
    guest_exit(0x7e);
  }
  m_irqs++;
  uint32_t source = mmio_read32(PLIC_CLAIM(CTX_M));
  service_uart(source);
  if (source) mmio_write32(PLIC_CLAIM(CTX_M), source);  // complete
}

void handle_s_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause != (CAUSE_INTERRUPT | IRQ_S_EXT)) {
    printf("FAIL unexpected S trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
    guest_exit(0x7e);
  }
  s_irqs++;
  uint32_t source = mmio_read32(PLIC_CLAIM(CTX_S));
  service_uart(source);
  if (source) mmio_write32(PLIC_CLAIM(CTX_S), source);
}

// Sleep in WFI until `done()`, with the global interrupt enable off between the check and
// the WFI: an interrupt taken in between (the last RX byte, the last THRE) would return to
// the WFI with nothing left to wake it, and the guest hung there (QEMU, about 1 run in 100
// under load: the UART's interrupts come from QEMU's I/O thread at any instruction). WFI
// still wakes on the pending interrupt, which is taken once the enable is set again.
static int threshold_irq_seen(void) { return m_irqs != 0; }
static int tx_done(void) { return !tx_active; }
static int rx_done(void) { return rx_len >= RX_LEN; }
static int s_irq_seen(void) { return s_irqs != 0; }

static void m_sleep_until(int (*done)(void)) {
  for (;;) {
    csr_clear(mstatus, MSTATUS_MIE);
    if (done()) break;
    __asm__ volatile("wfi");
    csr_set(mstatus, MSTATUS_MIE);
  }
  csr_set(mstatus, MSTATUS_MIE);
}

static void s_sleep_until(int (*done)(void)) {  // the same in S-mode, with sstatus.SIE
  for (;;) {
    csr_clear(sstatus, MSTATUS_SIE);
    if (done()) break;
    __asm__ volatile("wfi");
    csr_set(sstatus, MSTATUS_SIE);
  }
  csr_set(sstatus, MSTATUS_SIE);
}

static void print_log(const char *phase) {
  unsigned n = log_len < LOG_MAX ? log_len : LOG_MAX;
  unsigned thre = 0, rx = 0, other = 0, wrong_source = 0;
  for (unsigned i = 0; i < n; i++) {
    if (log_source[i] != UART0_IRQ) wrong_source++;
    if (log_iir[i] == IIR_THRE) thre++;
    else if (log_iir[i] == IIR_RX) rx++;
    else other++;
  }
  printf("%s: %u claim(s): source %u first, %u THRE, %u RX, %u other, %u not source 10\n",
         phase, log_len, n ? log_source[0] : 0, thre, rx, other, wrong_source);
}

static void s_main(void) {
  printf("now in S-mode\n");
  log_len = 0;
  csr_set(sie, 1UL << IRQ_S_EXT);
  csr_set(sstatus, MSTATUS_SIE);
  tx_active = 0;  // the THRE interrupt just switches itself off
  uart_ier(IER_THRE);
  s_sleep_until(s_irq_seen);
  print_log("s-thre");
  check_u64("s-claims", log_len, 1);
  check_u64("s-claimed-source", log_source[0], UART0_IRQ);
  check_u64("s-iir-thre", log_iir[0], IIR_THRE);
  check_u64("s-no-m-irqs", m_irqs, 0);
  guest_exit(check_summary("plic_uart"));
}

static const char kTxMessage[] = "interrupt-driven hello\n";

int main(void) {
  printf("plic_uart: PLIC + UART interrupts\n");
  // Context 0 (hart 0 M-mode) gets source 10 at priority 1.
  mmio_write32(PLIC_PRIORITY(UART0_IRQ), 1);
  check_u64("plic-priority-readback", mmio_read32(PLIC_PRIORITY(UART0_IRQ)), 1);
  mmio_write32(PLIC_ENABLE(CTX_M), 1u << UART0_IRQ);
  check_u64("plic-enable-readback", mmio_read32(PLIC_ENABLE(CTX_M)), 1u << UART0_IRQ);
  mmio_write32(PLIC_THRESHOLD(CTX_M), 1);  // priority 1 <= threshold 1: masked
  csr_set(mie, 1UL << IRQ_M_EXT);
  csr_set(mstatus, MSTATUS_MIE);
  check_u64("claim-when-idle", mmio_read32(PLIC_CLAIM(CTX_M)), 0);

  // 1. Masked by the threshold: the source is pending but nothing is delivered.
  tx_active = 0;
  uart_ier(IER_THRE);
  for (volatile int spin = 0; spin < 100; spin++) {
  }
  check_u64("pending-bit-set", (mmio_read32(PLIC_PENDING) >> UART0_IRQ) & 1, 1);
  check_u64("threshold-masks-meip", (csr_read(mip) >> IRQ_M_EXT) & 1, 0);
  check_u64("threshold-masks-irq", m_irqs, 0);
  // Lowering the threshold delivers it; the handler switches THRE off.
  mmio_write32(PLIC_THRESHOLD(CTX_M), 0);
  m_sleep_until(threshold_irq_seen);
  print_log("m-threshold");
  check_u64("m-first-claim-source", log_source[0], UART0_IRQ);
  check_u64("m-first-claim-iir", log_iir[0], IIR_THRE);
  check_u64("pending-bit-clear-after-complete", (mmio_read32(PLIC_PENDING) >> UART0_IRQ) & 1, 0);
  check_u64("iir-idle", mmio_read8(UART0_BASE + UART_IIR) & IIR_ID_MASK, IIR_NONE);

  // 2. Interrupt-driven transmit: one THRE interrupt per character, plus the final one
  //    that finds nothing left and disables THRE.
  log_len = 0;
  tx_next = kTxMessage;
  tx_active = 1;
  uart_ier(IER_THRE);
  m_sleep_until(tx_done);
  print_log("m-tx");
  check_u64("m-tx-claims", log_len, sizeof(kTxMessage) - 1 + 1);

  // 3. Interrupt-driven receive of the test's input.
  log_len = 0;
  printf("send %u bytes: ", RX_LEN);
  for (const char *p = RX_EXPECTED; *p; p++) printf(*p == '\n' ? "\\n" : "%c", *p);
  printf("\n");
  uart_ier(IER_RX);
  m_sleep_until(rx_done);
  uart_ier(0);
  rx_buf[rx_len] = 0;
  printf("received: %c%c%c%c (%u bytes)\n", rx_buf[0], rx_buf[1], rx_buf[2], rx_buf[3], rx_len);
  check_u64("rx-bytes", memcmp((const void *)rx_buf, RX_EXPECTED, RX_LEN), 0);
  check_u64("rx-claims-all-rx", log_iir[0] == IIR_RX && log_source[0] == UART0_IRQ, 1);

  // 4. S-mode external interrupts on context 1.
  csr_clear(mstatus, MSTATUS_MIE);
  csr_clear(mie, 1UL << IRQ_M_EXT);
  m_irqs = 0;
  mmio_write32(PLIC_ENABLE(CTX_M), 0);
  mmio_write32(PLIC_ENABLE(CTX_S), 1u << UART0_IRQ);
  mmio_write32(PLIC_THRESHOLD(CTX_S), 0);
  pmp_allow_all();
  csr_write(mideleg, 1UL << IRQ_S_EXT);
  csr_write(stvec, (uint64_t)(uintptr_t)s_trap_entry);
  enter_mode(1, s_main);
}
