// The /init console: buffered output to the console fd, flushed once per reply.
#pragma once
#include <stddef.h>

void console_set_fd(int fd);
void out_bytes(const char *p, size_t n);
void out_str(const char *s);
void out_uint(unsigned long v);
void out_flush(void);
// Prints "init: <what>" and powers the machine off: /init must never exit (that panics).
void fatal(const char *what, long err) __attribute__((noreturn));
void power_off(void) __attribute__((noreturn));
void restart(void) __attribute__((noreturn));
