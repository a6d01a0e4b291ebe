// Shared runtime for Tandem's guest programs: the QEMU virt board map, MMIO and CSR
// helpers, a polled 16550 console with a small printf, the SiFive test-finisher exit, and
// the trap frame the entries in trap.S hand to handle_m_trap / handle_s_trap.
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

// ---- board (QEMU virt, which Tandem follows) ----
#define UART0_BASE 0x10000000UL
#define FINISHER_BASE 0x00100000UL
#define CLINT_BASE 0x02000000UL
#define CLINT_MTIMECMP0 (CLINT_BASE + 0x4000)
#define CLINT_MTIME (CLINT_BASE + 0xbff8)
#define PLIC_BASE 0x0c000000UL
#define VIRTIO_MMIO_BASE 0x10001000UL
#define VIRTIO_MMIO_STRIDE 0x1000UL
#define VIRTIO_MMIO_SLOTS 8
#define UART0_IRQ 10
#define RAM_BASE 0x80000000UL

// ---- MMIO ----
static inline uint8_t mmio_read8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline uint64_t mmio_read64(uintptr_t a) { return *(volatile uint64_t *)a; }
static inline void mmio_write8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }
static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline void mmio_write64(uintptr_t a, uint64_t v) { *(volatile uint64_t *)a = v; }

// ---- CSRs ----
#define csr_read(csr)                                     \
  ({                                                      \
    uint64_t v_;                                          \
    __asm__ volatile("csrr %0, " #csr : "=r"(v_)::"memory"); \
    v_;                                                   \
  })
#define csr_write(csr, val) __asm__ volatile("csrw " #csr ", %0" ::"r"((uint64_t)(val)) : "memory")
#define csr_set(csr, val) __asm__ volatile("csrs " #csr ", %0" ::"r"((uint64_t)(val)) : "memory")
#define csr_clear(csr, val) __asm__ volatile("csrc " #csr ", %0" ::"r"((uint64_t)(val)) : "memory")

#define MSTATUS_SIE (1UL << 1)
#define MSTATUS_MIE (1UL << 3)
#define MSTATUS_SPIE (1UL << 5)
#define MSTATUS_MPIE (1UL << 7)
#define MSTATUS_SPP (1UL << 8)
#define MSTATUS_MPP_SHIFT 11
#define MSTATUS_MPP (3UL << MSTATUS_MPP_SHIFT)
#define MSTATUS_MPRV (1UL << 17)
#define MSTATUS_SUM (1UL << 18)
#define MSTATUS_MXR (1UL << 19)

#define IRQ_S_SOFT 1
#define IRQ_M_SOFT 3
#define IRQ_S_TIMER 5
#define IRQ_M_TIMER 7
#define IRQ_S_EXT 9
#define IRQ_M_EXT 11
#define CAUSE_INTERRUPT (1UL << 63)

#define CAUSE_MISALIGNED_FETCH 0
#define CAUSE_FETCH_ACCESS 1
#define CAUSE_ILLEGAL_INSTRUCTION 2
#define CAUSE_BREAKPOINT 3
#define CAUSE_MISALIGNED_LOAD 4
#define CAUSE_LOAD_ACCESS 5
#define CAUSE_MISALIGNED_STORE 6
#define CAUSE_STORE_ACCESS 7
#define CAUSE_USER_ECALL 8
#define CAUSE_SUPERVISOR_ECALL 9
#define CAUSE_MACHINE_ECALL 11
#define CAUSE_FETCH_PAGE_FAULT 12
#define CAUSE_LOAD_PAGE_FAULT 13
#define CAUSE_STORE_PAGE_FAULT 15

// ---- console and exit ----
void uart_putc(char c);
void uart_puts(const char *s);
int uart_getc_nonblocking(void);  // -1 when no byte is waiting
int printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int vprintf(const char *fmt, va_list ap);
// Ends the run through the SiFive test finisher: status 0 = pass (0x5555), else
// (status << 16) | 0x3333. Never returns.
void guest_exit(int status) __attribute__((noreturn));

// ---- tiny libc (the compiler may emit calls to these) ----
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

// ---- traps ----
struct trap_frame {
  uint64_t regs[32];  // regs[0] unused; regs[2] is the interrupted sp
  uint64_t epc;       // written back to xepc on return
};
// Weak defaults report the trap and fail; guests override the ones they use.
void handle_m_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval);
void handle_s_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval);
void m_trap_entry(void);
void s_trap_entry(void);

// Length in bytes of the instruction at `pc` (2 for compressed, else 4).
static inline unsigned insn_length(uint64_t pc) {
  return (*(volatile uint16_t *)pc & 3) == 3 ? 4 : 2;
}

// Without any PMP entry, S- and U-mode may access nothing; one NAPOT entry over the whole
// address space gives them everything (what firmware does before booting a kernel).
static inline void pmp_allow_all(void) {
  csr_write(pmpaddr0, ~0UL >> 10);
  csr_write(pmpcfg0, 0x1f);  // NAPOT | X | W | R
}

// Leaves M-mode: mret to `entry` in privilege `mpp` (0 = U, 1 = S), interrupts of the
// target mode as set in mstatus by the caller.
void enter_mode(unsigned mpp, void (*entry)(void)) __attribute__((noreturn));

// ---- self-check reporting ----
// Prints "ok NAME" or "FAIL NAME got X want Y" and counts failures.
extern unsigned checks_run, checks_failed;
void check_u64(const char *name, uint64_t got, uint64_t want);
// Prints the summary line and returns the exit status for main (0 if all passed).
int check_summary(const char *suite);
