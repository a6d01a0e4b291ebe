// tandem-kv on bare metal: the line protocol (protocol.c) on the UART, the store on the
// first virtio-blk device (disk_virtio.c). Input arrives by UART receive interrupts into a
// ring (common/uart_rx.c); the main loop sleeps in WFI whenever it is empty, so an idle
// store costs no instructions. QUIT ends the run with exit status 0 (pass).
#include "guest.h"
#include "kv.h"
#include "uart_rx.h"

void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause != (CAUSE_INTERRUPT | IRQ_M_EXT)) {
    printf("ERR internal trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
    guest_exit(0x7e);
  }
  uart_rx_interrupt();
}

void kv_console_write(const char *p, size_t n) {
  while (n--) uart_putc(*p++);
}

int main(void) {
  const char *note;
  kv_disk_open(&note);
  kv_print_banner(note);
  uart_rx_enable();
  csr_set(mstatus, MSTATUS_MIE);
  kv_serve(uart_rx_next_byte, 0, 0);  // returns after QUIT
  return 0;
}
