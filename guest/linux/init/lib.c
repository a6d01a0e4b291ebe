// The freestanding pieces /init needs without a libc: mem* (the compiler may also call
// these for struct copies), buffered console output, and the ways to stop.
#include "console.h"
#include "guest.h"
#include "sys.h"

void *memcpy(void *dst, const void *src, size_t n) {
  uint8_t *d = dst;
  const uint8_t *s = src;
  while (n--) *d++ = *s++;
  return dst;
}

void *memset(void *dst, int c, size_t n) {
  uint8_t *d = dst;
  while (n--) *d++ = (uint8_t)c;
  return dst;
}

int memcmp(const void *a, const void *b, size_t n) {
  const uint8_t *x = a, *y = b;
  for (; n; n--, x++, y++)
    if (*x != *y) return *x - *y;
  return 0;
}

size_t strlen(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

static int console_fd = 1;
static char out_buf[1024];
static size_t out_len;

void console_set_fd(int fd) { console_fd = fd; }

void out_flush(void) {
  size_t done = 0;
  if (console_fd < 0) out_len = 0;  // output for a client that is gone
  while (done < out_len) {
    long n = sys_write(console_fd, out_buf + done, out_len - done);
    if (n == -EINTR || n == -EAGAIN) continue;
    if (n <= 0) break;  // nowhere left to report it
    done += (size_t)n;
  }
  out_len = 0;
}

void out_bytes(const char *p, size_t n) {
  while (n--) {
    if (out_len == sizeof out_buf) out_flush();
    out_buf[out_len++] = *p++;
  }
}

void out_str(const char *s) { out_bytes(s, strlen(s)); }

void out_uint(unsigned long v) {
  char tmp[24];
  size_t n = 0;
  do {
    tmp[sizeof tmp - ++n] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  out_bytes(tmp + sizeof tmp - n, n);
}

void power_off(void) {
  out_flush();
  sys_sync();
  sys_reboot(LINUX_REBOOT_CMD_POWER_OFF);
  for (;;) syscall3(SYS_exit, 0x7f, 0, 0);  // reboot(2) failed: the kernel panics instead
}

void restart(void) {
  out_flush();
  sys_sync();
  sys_reboot(LINUX_REBOOT_CMD_RESTART);
  power_off();
}

void fatal(const char *what, long err) {
  out_str("init: ");
  out_str(what);
  if (err < 0) {
    out_str(" (errno ");
    out_uint((unsigned long)-err);
    out_str(")");
  }
  out_str("\n");
  power_off();
}
