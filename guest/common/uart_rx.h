// Interrupt-driven console input for M-mode guests: UART receive interrupts (PLIC source
// 10, context 0) fill a ring that main reads from, sleeping in WFI while it is empty, so a
// guest waiting for input costs no instructions (the event log records idle skips, not a
// spin). Guests that use it list GUEST_UART_RX_SOURCE in their SOURCES; the ring holds
// UART_RX_RING bytes (a power of two, 4096 unless the guest defines it).
#pragma once
#include <stdint.h>

// Routes the UART's receive interrupt to this hart: PLIC priority, enable and threshold,
// the UART's IER and mie.MEIE. The caller sets mstatus.MIE when it is ready for traps.
void uart_rx_enable(void);
// For handle_m_trap on a machine external interrupt: claims the PLIC source, drains the
// UART into the ring if it is the UART, and completes the claim.
void uart_rx_interrupt(void);
// The next input byte; sleeps in WFI while there is none (other interrupts still run).
uint8_t uart_rx_next_byte(void);
