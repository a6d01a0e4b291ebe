// timer: CLINT timer and software interrupts. M-mode: mtimecmp + WFI for a few ticks,
// WFI waking with interrupts globally off, masking through mie, MSIP. S-mode: the M
// handler forwards the timer as STIP (delegated through mideleg) the way SBI firmware
// does, plus rdtime and a self-raised SSIP. Printed values are counts, causes and
// orderings only, never raw times, so they do not depend on how many instructions a WFI
// or a handler takes.
#include "guest.h"

#define CLINT_MSIP0 (CLINT_BASE + 0x0)
#define TICKS 5
#define S_TICKS 3
#define INTERVAL 500  // mtime ticks; 50,000 instructions at 100 instructions per tick

#define REQ_SET_TIMER 1  // a7 of an S-mode ecall; a0 = deadline (UINT64_MAX = off)

static volatile unsigned m_timer_irqs, m_soft_irqs, s_timer_irqs, s_soft_irqs;
static volatile uint64_t deadline;
static volatile int fired_late_enough = 1;  // every interrupt arrived at or after its deadline
static volatile int forward_to_s;           // phase 2: the M timer is S-mode's timer

static uint64_t mtime(void) { return mmio_read64(CLINT_MTIME); }
static void set_mtimecmp(uint64_t v) { mmio_write64(CLINT_MTIMECMP0, v); }

void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause == (CAUSE_INTERRUPT | IRQ_M_TIMER)) {
    if (forward_to_s) {
      // Hand the tick to S-mode; M stays out of the way until S re-arms.
      csr_clear(mie, 1UL << IRQ_M_TIMER);
      csr_set(mip, 1UL << IRQ_S_TIMER);
      return;
    }
    m_timer_irqs++;
    if (mtime() < deadline) fired_late_enough = 0;
    set_mtimecmp(UINT64_MAX);  // lowers MTIP
    return;
  }
  if (cause == (CAUSE_INTERRUPT | IRQ_M_SOFT)) {
    m_soft_irqs++;
    mmio_write32(CLINT_MSIP0, 0);
    return;
  }
  if (cause == CAUSE_SUPERVISOR_ECALL && frame->regs[17] == REQ_SET_TIMER) {
    deadline = frame->regs[10];
    set_mtimecmp(deadline);
    csr_clear(mip, 1UL << IRQ_S_TIMER);
    if (deadline != UINT64_MAX) csr_set(mie, 1UL << IRQ_M_TIMER);
    frame->epc += 4;
    return;
  }
  printf("FAIL unexpected M trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
  guest_exit(0x7e);
}

static void sbi_set_timer(uint64_t when) {
  register uint64_t a0 __asm__("a0") = when;
  register uint64_t a7 __asm__("a7") = REQ_SET_TIMER;
  __asm__ volatile("ecall" : "+r"(a0) : "r"(a7) : "memory");
}

void handle_s_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause == (CAUSE_INTERRUPT | IRQ_S_TIMER)) {
    s_timer_irqs++;
    uint64_t now;
    __asm__ volatile("rdtime %0" : "=r"(now));
    if (now < deadline) fired_late_enough = 0;
    sbi_set_timer(UINT64_MAX);  // M clears STIP
    return;
  }
  if (cause == (CAUSE_INTERRUPT | IRQ_S_SOFT)) {
    s_soft_irqs++;
    csr_clear(sip, 1UL << IRQ_S_SOFT);
    return;
  }
  printf("FAIL unexpected S trap cause=0x%lx epc=0x%lx tval=0x%lx\n", cause, frame->epc, tval);
  guest_exit(0x7e);
}

static void s_main(void) {
  printf("now in S-mode\n");
  uint64_t before = mtime(), t, after;
  __asm__ volatile("rdtime %0" : "=r"(t));
  after = mtime();
  check_u64("s-rdtime-between-mtime-reads", before <= t && t <= after, 1);

  csr_set(sie, (1UL << IRQ_S_TIMER) | (1UL << IRQ_S_SOFT));
  csr_set(sstatus, MSTATUS_SIE);
  for (unsigned i = 0; i < S_TICKS; i++) {
    unsigned target = s_timer_irqs + 1;
    sbi_set_timer(mtime() + INTERVAL);
    while (s_timer_irqs < target) __asm__ volatile("wfi");
    printf("s-tick %u: scause=0x%lx\n", i + 1, csr_read(scause));
  }
  check_u64("s-timer-irqs", s_timer_irqs, S_TICKS);

  csr_set(sip, 1UL << IRQ_S_SOFT);  // taken right after this instruction
  __asm__ volatile("nop");
  printf("s-soft: %u interrupt(s), scause=0x%lx\n", s_soft_irqs, csr_read(scause));
  check_u64("s-soft-irqs", s_soft_irqs, 1);
  check_u64("timer-never-early", fired_late_enough, 1);
  guest_exit(check_summary("timer"));
}

int main(void) {
  printf("timer: CLINT interrupts\n");
  uint64_t t1 = mtime(), t2 = mtime();
  check_u64("mtime-monotonic", t1 <= t2, 1);
  for (volatile int spin = 0; spin < 2000; spin++) {
  }
  check_u64("mtime-advances", mtime() > t2, 1);

  // 1. A few timer interrupts, each awaited in WFI.
  set_mtimecmp(UINT64_MAX);
  csr_set(mie, 1UL << IRQ_M_TIMER);
  csr_set(mstatus, MSTATUS_MIE);
  for (unsigned i = 0; i < TICKS; i++) {
    unsigned target = m_timer_irqs + 1;
    deadline = mtime() + INTERVAL;
    set_mtimecmp(deadline);
    while (m_timer_irqs < target) __asm__ volatile("wfi");
    printf("m-tick %u: mcause=0x%lx\n", i + 1, csr_read(mcause));
  }
  check_u64("m-timer-irqs", m_timer_irqs, TICKS);

  // 2. WFI wakes on a pending+enabled interrupt even with mstatus.MIE off; no trap is
  //    taken until MIE is set again.
  csr_clear(mstatus, MSTATUS_MIE);
  deadline = mtime() + INTERVAL;
  set_mtimecmp(deadline);
  __asm__ volatile("wfi");
  while ((csr_read(mip) & (1UL << IRQ_M_TIMER)) == 0) {
  }
  check_u64("wfi-wakes-with-mie-off", m_timer_irqs, TICKS);
  csr_set(mstatus, MSTATUS_MIE);
  __asm__ volatile("nop");
  check_u64("pending-taken-after-mie-on", m_timer_irqs, TICKS + 1);

  // 3. mie.MTIE masks: MTIP shows in mip but nothing is taken; raising mtimecmp past mtime
  //    clears MTIP at once.
  csr_clear(mie, 1UL << IRQ_M_TIMER);
  deadline = mtime();
  set_mtimecmp(deadline);
  for (volatile int spin = 0; spin < 100; spin++) {
  }
  check_u64("mtip-pending-while-masked", (csr_read(mip) >> IRQ_M_TIMER) & 1, 1);
  check_u64("masked-not-taken", m_timer_irqs, TICKS + 1);
  set_mtimecmp(UINT64_MAX);
  check_u64("mtip-cleared-by-mtimecmp", (csr_read(mip) >> IRQ_M_TIMER) & 1, 0);

  // 4. Machine software interrupt through the CLINT's msip register.
  csr_set(mie, 1UL << IRQ_M_SOFT);
  mmio_write32(CLINT_MSIP0, 1);
  __asm__ volatile("nop");
  printf("m-soft: %u interrupt(s), mcause=0x%lx\n", m_soft_irqs, csr_read(mcause));
  check_u64("m-soft-irqs", m_soft_irqs, 1);
  check_u64("msip-cleared", (csr_read(mip) >> IRQ_M_SOFT) & 1, 0);

  // 5. S-mode timer through delegation.
  csr_clear(mstatus, MSTATUS_MIE);
  csr_clear(mie, 1UL << IRQ_M_SOFT);
  forward_to_s = 1;
  pmp_allow_all();
  csr_write(mideleg, (1UL << IRQ_S_TIMER) | (1UL << IRQ_S_SOFT));
  csr_write(mcounteren, 2);  // S may read `time`
  csr_write(stvec, (uint64_t)(uintptr_t)s_trap_entry);
  enter_mode(1, s_main);
}
