// Console, printf, exit, libc bits and default trap handlers shared by every guest.
#include "guest.h"

// 16550 registers (byte-wide, stride 1 on QEMU virt).
#define UART_THR 0
#define UART_RBR 0
#define UART_LSR 5
#define UART_LSR_DR 0x01
#define UART_LSR_THRE 0x20

void uart_putc(char c) {
  while ((mmio_read8(UART0_BASE + UART_LSR) & UART_LSR_THRE) == 0) {
  }
  mmio_write8(UART0_BASE + UART_THR, (uint8_t)c);
}

void uart_puts(const char *s) {
  while (*s) uart_putc(*s++);
}

int uart_getc_nonblocking(void) {
  if ((mmio_read8(UART0_BASE + UART_LSR) & UART_LSR_DR) == 0) return -1;
  return mmio_read8(UART0_BASE + UART_RBR);
}

void guest_exit(int status) {
  uint32_t code = status == 0 ? 0x5555 : (((uint32_t)status & 0xffff) << 16) | 0x3333;
  mmio_write32(FINISHER_BASE, code);
  for (;;) __asm__ volatile("wfi");
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x < *y ? -1 : 1;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

// ---- printf: %d %i %u %x %X %p %s %c %%, flags '-' '0', width, length l/ll/z ----
static void emit_padded(const char *digits, unsigned len, int negative, unsigned width,
                        int zero_pad, int left) {
  unsigned total = len + (negative ? 1 : 0);
  unsigned pad = width > total ? width - total : 0;
  if (!left && !zero_pad)
    while (pad--) uart_putc(' ');
  if (negative) uart_putc('-');
  if (!left && zero_pad)
    while (pad--) uart_putc('0');
  for (unsigned i = 0; i < len; i++) uart_putc(digits[i]);
  if (left)
    while (pad--) uart_putc(' ');
}

static unsigned format_unsigned(uint64_t v, unsigned base, int upper, char *out) {
  const char *set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char tmp[24];
  unsigned n = 0;
  do {
    tmp[n++] = set[v % base];
    v /= base;
  } while (v);
  for (unsigned i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

int vprintf(const char *fmt, va_list ap) {
  for (; *fmt; fmt++) {
    if (*fmt != '%') {
      uart_putc(*fmt);
      continue;
    }
    fmt++;
    int left = 0, zero_pad = 0;
    for (;; fmt++) {
      if (*fmt == '-') left = 1;
      else if (*fmt == '0') zero_pad = 1;
      else break;
    }
    unsigned width = 0;
    while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (unsigned)(*fmt++ - '0');
    int longs = 0;
    while (*fmt == 'l' || *fmt == 'z') {
      longs++;
      fmt++;
    }
    char digits[24];
    unsigned len;
    switch (*fmt) {
      case 'd':
      case 'i': {
        int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        len = format_unsigned(mag, 10, 0, digits);
        emit_padded(digits, len, v < 0, width, zero_pad, left);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
        len = format_unsigned(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', digits);
        emit_padded(digits, len, 0, width, zero_pad, left);
        break;
      }
      case 'p': {
        uint64_t v = (uint64_t)(uintptr_t)va_arg(ap, void *);
        uart_puts("0x");
        len = format_unsigned(v, 16, 0, digits);
        emit_padded(digits, len, 0, width, zero_pad, left);
        break;
      }
      case 's': {
        const char *s = va_arg(ap, const char *);
        if (!s) s = "(null)";
        unsigned n = (unsigned)strlen(s);
        unsigned pad = width > n ? width - n : 0;
        if (!left)
          while (pad--) uart_putc(' ');
        uart_puts(s);
        if (left)
          while (pad--) uart_putc(' ');
        break;
      }
      case 'c':
        uart_putc((char)va_arg(ap, int));
        break;
      case '%':
        uart_putc('%');
        break;
      case '\0':
        return 0;
      default:
        uart_putc('%');
        uart_putc(*fmt);
        break;
    }
  }
  return 0;
}

int printf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  return 0;
}

// ---- traps ----
static void report_unexpected(const char *mode, struct trap_frame *frame, uint64_t cause,
                              uint64_t tval) {
  printf("FAIL unexpected %s-mode trap cause=0x%lx epc=0x%lx tval=0x%lx\n", mode, cause,
         frame->epc, tval);
  guest_exit(0x7e);
}

__attribute__((weak)) void handle_m_trap(struct trap_frame *frame, uint64_t cause,
                                         uint64_t tval) {
  report_unexpected("M", frame, cause, tval);
}

__attribute__((weak)) void handle_s_trap(struct trap_frame *frame, uint64_t cause,
                                         uint64_t tval) {
  report_unexpected("S", frame, cause, tval);
}

void enter_mode(unsigned mpp, void (*entry)(void)) {
  uint64_t status = csr_read(mstatus);
  status = (status & ~MSTATUS_MPP) | ((uint64_t)(mpp & 3) << MSTATUS_MPP_SHIFT);
  csr_write(mstatus, status);
  csr_write(mepc, (uint64_t)(uintptr_t)entry);
  __asm__ volatile("mret");
  __builtin_unreachable();
}

// ---- self-check reporting ----
unsigned checks_run, checks_failed;

void check_u64(const char *name, uint64_t got, uint64_t want) {
  checks_run++;
  if (got == want) {
    printf("ok %s\n", name);
  } else {
    checks_failed++;
    printf("FAIL %s got 0x%lx want 0x%lx\n", name, got, want);
  }
}

int check_summary(const char *suite) {
  printf("%s: %u checks, %u passed, %u failed\n", suite, checks_run, checks_run - checks_failed,
         checks_failed);
  if (checks_failed) {
    printf("%s: FAIL\n", suite);
    return 1;
  }
  printf("%s: PASS\n", suite);
  return 0;
}
