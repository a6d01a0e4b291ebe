// A tiny S-mode payload for OpenSBI (fw_jump): prints through the SBI console, checks the
// base extension, the time CSR and an SBI timer interrupt, then powers the machine off
// through SBI SRST. Its output does not depend on timing, so QEMU's is the reference.
#include <stdint.h>

#define SBI_EXT_LEGACY_PUTCHAR 0x01
#define SBI_EXT_BASE 0x10
#define SBI_EXT_TIME 0x54494d45
#define SBI_EXT_IPI 0x735049
#define SBI_EXT_RFENCE 0x52464e43
#define SBI_EXT_HSM 0x48534d
#define SBI_EXT_SRST 0x53525354

#define SCAUSE_INTERRUPT (1ull << 63)
#define IRQ_S_TIMER 5
#define SIE_STIE (1ull << 5)
#define SSTATUS_SIE (1ull << 1)

struct sbiret {
  long error;
  long value;
};

static struct sbiret sbi_call(long ext, long fid, long arg0, long arg1) {
  register long a0 asm("a0") = arg0;
  register long a1 asm("a1") = arg1;
  register long a6 asm("a6") = fid;
  register long a7 asm("a7") = ext;
  asm volatile("ecall" : "+r"(a0), "+r"(a1) : "r"(a6), "r"(a7) : "memory");
  return (struct sbiret){a0, a1};
}

static void put_char(char c) { sbi_call(SBI_EXT_LEGACY_PUTCHAR, 0, c, 0); }

static void put_str(const char* s) {
  while (*s) put_char(*s++);
}

static void put_hex(uint64_t v) {
  put_str("0x");
  for (int shift = 60; shift >= 0; shift -= 4) put_char("0123456789abcdef"[(v >> shift) & 0xf]);
}

static void put_dec(uint64_t v) {
  char buf[21];
  int i = 20;
  buf[i] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  put_str(&buf[i]);
}

static uint64_t read_time(void) {
  uint64_t t;
  asm volatile("rdtime %0" : "=r"(t));
  return t;
}

static volatile unsigned timer_interrupts;
static volatile uint64_t unexpected_cause;

void on_trap(uint64_t scause) {
  if (scause == (SCAUSE_INTERRUPT | IRQ_S_TIMER)) {
    ++timer_interrupts;
    sbi_call(SBI_EXT_TIME, 0, -1, 0);  // no next deadline: clears the pending STIP
  } else {
    unexpected_cause = scause;
    asm volatile("csrc sie, %0" ::"r"(~0ull));  // stop whatever keeps firing
  }
}

static int check(const char* what, int ok) {
  put_str(what);
  put_str(ok ? ": ok\n" : ": FAILED\n");
  return ok;
}

int main(uint64_t hartid, uint64_t dtb) {
  int ok = 1;
  put_str("sbi_payload: hart ");
  put_dec(hartid);
  put_str(" in S-mode, device tree at ");
  put_hex(dtb);
  put_str("\n");

  const struct sbiret spec = sbi_call(SBI_EXT_BASE, 0, 0, 0);
  const struct sbiret impl = sbi_call(SBI_EXT_BASE, 1, 0, 0);
  put_str("sbi: spec ");
  put_dec((uint64_t)spec.value >> 24);
  put_str(".");
  put_dec((uint64_t)spec.value & 0xffffff);
  put_str(", implementation ");
  put_dec((uint64_t)impl.value);
  put_str("\n");
  static const struct {
    long id;
    const char* name;
  } extensions[] = {{SBI_EXT_TIME, "TIME"}, {SBI_EXT_IPI, "IPI"}, {SBI_EXT_RFENCE, "RFENCE"},
                    {SBI_EXT_HSM, "HSM"},   {SBI_EXT_SRST, "SRST"}};
  for (unsigned i = 0; i < sizeof extensions / sizeof extensions[0]; ++i) {
    const struct sbiret r = sbi_call(SBI_EXT_BASE, 3, extensions[i].id, 0);
    ok &= check(extensions[i].name, r.error == 0 && r.value != 0);
  }

  // The time CSR is readable from S-mode (OpenSBI sets mcounteren.TM) and moves forward.
  const uint64_t t0 = read_time();
  for (volatile int i = 0; i < 1000; ++i) {
  }
  ok &= check("rdtime advances", read_time() > t0);

  // An SBI timer 1 ms ahead: OpenSBI takes the M-mode timer interrupt and raises STIP.
  asm volatile("csrs sie, %0" ::"r"(SIE_STIE));
  sbi_call(SBI_EXT_TIME, 0, (long)(read_time() + 10000), 0);
  asm volatile("csrs sstatus, %0" ::"r"(SSTATUS_SIE));
  while (timer_interrupts == 0 && unexpected_cause == 0) asm volatile("wfi");
  asm volatile("csrc sstatus, %0" ::"r"(SSTATUS_SIE));
  ok &= check("sbi timer interrupt", timer_interrupts == 1 && unexpected_cause == 0);
  if (unexpected_cause) {
    put_str("unexpected scause ");
    put_hex(unexpected_cause);
    put_str("\n");
  }

  put_str(ok ? "sbi_payload: PASS, shutting down\n" : "sbi_payload: FAIL, shutting down\n");
  // SRST: shutdown (type 0) with reason "no reason" (0) or "system failure" (1).
  sbi_call(SBI_EXT_SRST, 0, 0, ok ? 0 : 1);
  put_str("sbi_payload: SRST returned\n");
  return 1;
}
