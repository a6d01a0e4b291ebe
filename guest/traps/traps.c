// traps: synchronous exceptions and their delegation. M-mode first (ecall, ebreak,
// illegal instructions, access faults, misaligned atomics), then S-mode via mret with
// medeleg sending U-ecall and illegal instructions to S, then U-mode via sret. Every trap
// prints the mode that took it, cause, epc (relative to the faulting site), tval and the
// previous privilege, so the QEMU comparison checks all of them; each is also checked
// against the privileged spec.
#include "guest.h"

void site_ecall(void);
void site_ebreak(void);
void site_c_ebreak(void);
void site_unimp(void);
void site_c_unimp(void);
void site_read_mstatus(void);
void site_sret(void);
uint64_t site_load(uint64_t addr);
void site_store(uint64_t addr);
uint64_t site_amoadd_w(uint64_t addr, uint64_t value);
uint64_t site_lr_w(uint64_t addr);

// What the last trap looked like, written by the handlers.
struct observed {
  char mode;  // 'M' or 'S'
  uint64_t cause, epc, tval;
  unsigned from;  // privilege the trap came from (xPP)
  unsigned count;
};
static volatile struct observed seen;

// Requests from U-mode to the S handler (in a7 with an ecall).
#define REQ_LEAVE_USER 0x4c454156  // "LEAV"

static void s_after_user(void);

static void record(char mode, struct trap_frame *frame, uint64_t cause, uint64_t tval,
                   unsigned from) {
  seen.mode = mode;
  seen.cause = cause;
  seen.epc = frame->epc;
  seen.tval = tval;
  seen.from = from;
  seen.count++;
  if (cause == CAUSE_FETCH_ACCESS || cause == CAUSE_FETCH_PAGE_FAULT) {
    frame->epc = frame->regs[1];  // the target was called: return to the caller
  } else {
    frame->epc += insn_length(frame->epc);
  }
}

void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause & CAUSE_INTERRUPT) {
    printf("FAIL unexpected interrupt cause=0x%lx\n", cause);
    guest_exit(0x7d);
  }
  unsigned mpp = (unsigned)((csr_read(mstatus) & MSTATUS_MPP) >> MSTATUS_MPP_SHIFT);
  record('M', frame, cause, tval, mpp);
}

void handle_s_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  unsigned spp = (csr_read(sstatus) & MSTATUS_SPP) ? 1 : 0;
  if (cause == CAUSE_USER_ECALL && frame->regs[17] == REQ_LEAVE_USER) {
    // Finish the U phase: sret lands in S-mode at s_after_user instead.
    frame->epc = (uint64_t)(uintptr_t)s_after_user;
    csr_set(sstatus, MSTATUS_SPP);
    return;
  }
  record('S', frame, cause, tval, spp);
}

static void check_either(const char *name, uint64_t got, uint64_t want_a, uint64_t want_b) {
  if (got == want_b) want_a = want_b;
  check_u64(name, got, want_a);
}

static void begin(void) { seen.count = 0; }

// Prints the observation and checks it. `tval_alt` is the other value the spec allows
// (e.g. 0 instead of the faulting instruction bits); pass the same value if there is none.
static void expect(const char *name, char mode, uint64_t cause, void *site, uint64_t tval,
                   uint64_t tval_alt, unsigned from) {
  printf("%s: %u trap(s) to %c-mode cause=%lu epc-site=%ld tval=0x%lx from=%u\n", name,
         seen.count, seen.mode, seen.cause, (int64_t)(seen.epc - (uint64_t)(uintptr_t)site),
         seen.tval, seen.from);
  char label[64];
  const char *parts[] = {"count", "mode", "cause", "epc", "tval", "from"};
  uint64_t got[] = {seen.count, (uint64_t)seen.mode, seen.cause, seen.epc, seen.tval, seen.from};
  uint64_t want[] = {1, (uint64_t)mode, cause, (uint64_t)(uintptr_t)site, tval, from};
  for (unsigned i = 0; i < 6; i++) {
    unsigned n = 0;
    for (const char *p = name; *p && n < 40; p++) label[n++] = *p;
    label[n++] = '-';
    for (const char *p = parts[i]; *p; p++) label[n++] = *p;
    label[n] = 0;
    if (i == 4) {
      check_either(label, got[i], want[i], tval_alt);
    } else {
      check_u64(label, got[i], want[i]);
    }
  }
}

static uint64_t scratch[2] __attribute__((aligned(16)));

#define PRV_U 0
#define PRV_S 1
#define PRV_M 3

static void u_main(void);

static void m_phase(void) {
  begin();
  site_ecall();
  expect("m-ecall", 'M', CAUSE_MACHINE_ECALL, site_ecall, 0, 0, PRV_M);

  // mtval for ebreak is the breakpoint address (or 0, which the spec also allows).
  begin();
  site_ebreak();
  expect("m-ebreak", 'M', CAUSE_BREAKPOINT, site_ebreak, (uint64_t)(uintptr_t)site_ebreak, 0,
         PRV_M);
  begin();
  site_c_ebreak();
  expect("m-c.ebreak", 'M', CAUSE_BREAKPOINT, site_c_ebreak,
         (uint64_t)(uintptr_t)site_c_ebreak, 0, PRV_M);

  // mtval for an illegal instruction is its encoding (or 0).
  begin();
  site_unimp();
  expect("m-illegal-unimp", 'M', CAUSE_ILLEGAL_INSTRUCTION, site_unimp, 0xc0001073, 0, PRV_M);
  begin();
  site_c_unimp();
  expect("m-illegal-c.unimp", 'M', CAUSE_ILLEGAL_INSTRUCTION, site_c_unimp, 0, 0, PRV_M);

  // Nothing is mapped at 0x0..0xff on the virt board.
  begin();
  site_load(0x0);
  expect("m-load-access", 'M', CAUSE_LOAD_ACCESS, site_load, 0x0, 0x0, PRV_M);
  begin();
  site_load(0x10);
  expect("m-load-access-tval", 'M', CAUSE_LOAD_ACCESS, site_load, 0x10, 0x10, PRV_M);
  begin();
  site_store(0x8);
  expect("m-store-access", 'M', CAUSE_STORE_ACCESS, site_store, 0x8, 0x8, PRV_M);
  begin();
  ((void (*)(void))0x0)();
  expect("m-fetch-access", 'M', CAUSE_FETCH_ACCESS, (void *)0x0, 0x0, 0x0, PRV_M);

  // Misaligned atomics must trap and store nothing. The spec's cause is 6 (store/AMO
  // misaligned) or 7 (access fault); QEMU 7.2 with single-threaded TCG (which -icount
  // forces) emulates the AMO as load+store and reports 4 (load misaligned). The printed
  // line leaves the cause out so Tandem can follow the spec and still match QEMU's output.
  uint64_t odd = (uint64_t)(uintptr_t)scratch + 2;
  scratch[0] = 0;
  begin();
  site_amoadd_w(odd, 1);
  printf("m-amo-misaligned: %u trap(s) to %c-mode epc-site=%ld tval-addr=%ld\n", seen.count,
         seen.mode, (int64_t)(seen.epc - (uint64_t)(uintptr_t)site_amoadd_w),
         (int64_t)(seen.tval - odd));
  check_u64("m-amo-misaligned-count", seen.count, 1);
  check_u64("m-amo-misaligned-epc", seen.epc, (uint64_t)(uintptr_t)site_amoadd_w);
  check_u64("m-amo-misaligned-tval", seen.tval, odd);
  check_u64("m-amo-misaligned-cause-is-misaligned-or-access-fault",
            seen.cause >= CAUSE_MISALIGNED_LOAD && seen.cause <= CAUSE_STORE_ACCESS, 1);
  check_u64("m-amo-misaligned-no-store", scratch[0], 0);
  begin();
  site_lr_w(odd);
  expect("m-lr-misaligned", 'M', CAUSE_MISALIGNED_LOAD, site_lr_w, odd, odd, PRV_M);

  // The trap entry saved MIE into MPIE and cleared MIE; mret restored it.
  check_u64("m-mstatus-mie-after-mret", csr_read(mstatus) & MSTATUS_MIE, 0);
}

static void s_main(void) {
  printf("now in S-mode\n");
  begin();
  site_ecall();
  expect("s-ecall", 'M', CAUSE_SUPERVISOR_ECALL, site_ecall, 0, 0, PRV_S);
  // Illegal instructions are delegated: S takes its own.
  begin();
  site_read_mstatus();
  expect("s-illegal-csr", 'S', CAUSE_ILLEGAL_INSTRUCTION, site_read_mstatus, 0x30002573, 0,
         PRV_S);
  // Access faults are not delegated: M takes them, MPP says S.
  begin();
  site_load(0x0);
  expect("s-load-access", 'M', CAUSE_LOAD_ACCESS, site_load, 0x0, 0x0, PRV_S);
  begin();
  site_ebreak();
  expect("s-ebreak", 'M', CAUSE_BREAKPOINT, site_ebreak, (uint64_t)(uintptr_t)site_ebreak, 0,
         PRV_S);

  // Drop to U with sret.
  csr_clear(sstatus, MSTATUS_SPP);
  csr_write(sepc, (uint64_t)(uintptr_t)u_main);
  __asm__ volatile("sret");
  __builtin_unreachable();
}

static void u_main(void) {
  printf("now in U-mode\n");
  begin();
  site_ecall();
  expect("u-ecall", 'S', CAUSE_USER_ECALL, site_ecall, 0, 0, PRV_U);
  begin();
  site_read_mstatus();
  expect("u-illegal-csr", 'S', CAUSE_ILLEGAL_INSTRUCTION, site_read_mstatus, 0x30002573, 0,
         PRV_U);
  begin();
  site_sret();
  expect("u-illegal-sret", 'S', CAUSE_ILLEGAL_INSTRUCTION, site_sret, 0x10200073, 0, PRV_U);
  begin();
  site_ebreak();
  expect("u-ebreak", 'M', CAUSE_BREAKPOINT, site_ebreak, (uint64_t)(uintptr_t)site_ebreak, 0,
         PRV_U);
  begin();
  site_store(0x8);
  expect("u-store-access", 'M', CAUSE_STORE_ACCESS, site_store, 0x8, 0x8, PRV_U);

  register uint64_t a7 __asm__("a7") = REQ_LEAVE_USER;
  __asm__ volatile("ecall" ::"r"(a7));
  printf("FAIL returned to U-mode after the leave request\n");
  guest_exit(0x7c);
}

static void s_after_user(void) {
  printf("back in S-mode\n");
  guest_exit(check_summary("traps"));
}

int main(void) {
  printf("traps: exceptions and delegation\n");
  m_phase();

  pmp_allow_all();
  csr_write(medeleg, (1UL << CAUSE_USER_ECALL) | (1UL << CAUSE_ILLEGAL_INSTRUCTION));
  csr_write(stvec, (uint64_t)(uintptr_t)s_trap_entry);
  check_u64("medeleg-readback", csr_read(medeleg) & ((1UL << CAUSE_USER_ECALL) | (1UL << CAUSE_ILLEGAL_INSTRUCTION)),
            (1UL << CAUSE_USER_ECALL) | (1UL << CAUSE_ILLEGAL_INSTRUCTION));
  enter_mode(PRV_S, s_main);
}
