// idle1k: an idle guest on a 1 kHz timer. Arms mtimecmp every 1 ms of guest time (10,000
// ticks of the 10 MHz timebase), sleeps in WFI between interrupts, and exits after
// IDLE_INTERRUPTS of them (2000 = 2 s of guest time; idle1k_short: 200). Between
// interrupts it executes nothing, so a recording of it holds only time records (idle
// skips), never input. Output is counts only, never times, so QEMU and Tandem agree.
#include "guest.h"

#ifndef IDLE_INTERRUPTS
#define IDLE_INTERRUPTS 2000
#endif
#define REPORT_EVERY 500
#define TICKS_PER_MS 10000  // 10 MHz timebase

static volatile unsigned interrupts;
static volatile unsigned early;  // interrupts taken before their deadline (must stay 0)
static uint64_t deadline;

static uint64_t mtime(void) { return mmio_read64(CLINT_MTIME); }
static void set_mtimecmp(uint64_t v) { mmio_write64(CLINT_MTIMECMP0, v); }

void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause != (CAUSE_INTERRUPT | IRQ_M_TIMER)) {
    printf("FAIL unexpected M trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
    guest_exit(0x7e);
  }
  if (mtime() < deadline) early++;
  interrupts++;
  // The next deadline follows the previous one, not "now": a late interrupt does not
  // stretch the period, so N interrupts always span N ms of guest time.
  deadline += TICKS_PER_MS;
  set_mtimecmp(interrupts < IDLE_INTERRUPTS ? deadline : UINT64_MAX);
}

int main(void) {
  printf("idle1k: %u timer interrupts at 1 kHz, WFI in between\n", IDLE_INTERRUPTS);
  uint64_t start = mtime();
  deadline = start + TICKS_PER_MS;
  set_mtimecmp(deadline);
  csr_set(mie, 1UL << IRQ_M_TIMER);

  unsigned reported = 0;
  for (;;) {
    // MIE off between the check and the WFI, so an interrupt cannot slip in between and
    // leave us asleep after the last one; WFI still wakes on the pending MTIP.
    csr_clear(mstatus, MSTATUS_MIE);
    unsigned seen = interrupts;
    if (seen < IDLE_INTERRUPTS && seen / REPORT_EVERY == reported) __asm__ volatile("wfi");
    csr_set(mstatus, MSTATUS_MIE);  // the pending interrupt is taken here
    seen = interrupts;
    while (reported < seen / REPORT_EVERY) {
      reported++;
      printf("idle1k: %u interrupts\n", reported * REPORT_EVERY);
    }
    if (seen >= IDLE_INTERRUPTS) break;
  }
  csr_clear(mie, 1UL << IRQ_M_TIMER);
  printf("idle1k: done after %u interrupts\n", interrupts);
  check_u64("interrupt-count", interrupts, IDLE_INTERRUPTS);
  check_u64("none-before-its-deadline", early, 0);
  check_u64("guest-time-covered", mtime() - start >= (uint64_t)IDLE_INTERRUPTS * TICKS_PER_MS, 1);
  return check_summary("idle1k");
}
