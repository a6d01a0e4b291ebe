// The receive ring behind uart_rx.h. Single producer (the trap handler) and single consumer
// (main) on one hart: the indices only need to be volatile, each side writes just its own.
#include "uart_rx.h"

#include "guest.h"

#ifndef UART_RX_RING
#define UART_RX_RING 4096
#endif
_Static_assert((UART_RX_RING & (UART_RX_RING - 1)) == 0, "UART_RX_RING: a power of two");

#define PLIC_PRIORITY(src) (PLIC_BASE + 4 * (src))
#define PLIC_ENABLE_CTX0 (PLIC_BASE + 0x2000)
#define PLIC_THRESHOLD_CTX0 (PLIC_BASE + 0x200000)
#define PLIC_CLAIM_CTX0 (PLIC_BASE + 0x200004)
#define UART_IER 1
#define UART_IER_RX 0x01

static volatile uint8_t rx_ring[UART_RX_RING];
static volatile uint32_t rx_head, rx_tail;  // head: next write (handler), tail: next read
static volatile int rx_paused;              // the ring filled up: RX interrupts are off

static void uart_set_ier(uint8_t v) { mmio_write8(UART0_BASE + UART_IER, v); }

static void drain_uart(void) {
  while (rx_head - rx_tail < UART_RX_RING) {
    int c = uart_getc_nonblocking();
    if (c < 0) return;
    rx_ring[rx_head % UART_RX_RING] = (uint8_t)c;
    __asm__ volatile("" ::: "memory");  // the byte before the index that publishes it
    rx_head++;
  }
  // Ring full: leave the rest in the UART (its FIFO pushes back on the sender) and stop
  // the level-triggered interrupt until main has made room.
  rx_paused = 1;
  uart_set_ier(0);
}

void uart_rx_interrupt(void) {
  uint32_t source = mmio_read32(PLIC_CLAIM_CTX0);
  if (source == UART0_IRQ) drain_uart();
  if (source) mmio_write32(PLIC_CLAIM_CTX0, source);  // complete
}

void uart_rx_enable(void) {
  mmio_write32(PLIC_PRIORITY(UART0_IRQ), 1);
  mmio_write32(PLIC_ENABLE_CTX0, 1u << UART0_IRQ);
  mmio_write32(PLIC_THRESHOLD_CTX0, 0);
  uart_set_ier(UART_IER_RX);
  csr_set(mie, 1UL << IRQ_M_EXT);
}

uint8_t uart_rx_next_byte(void) {
  for (;;) {
    if (rx_tail != rx_head) {
      uint8_t c = rx_ring[rx_tail % UART_RX_RING];
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
