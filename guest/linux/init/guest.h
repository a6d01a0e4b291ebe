// What the shared kv sources (guest/kv: store.c, persist.c, protocol.c) expect from the
// bare-metal runtime's guest.h, for the Linux /init: they are compiled unchanged from
// guest/kv, so both kv guests share one table, disk format and protocol.
#pragma once
#include <stddef.h>
#include <stdint.h>

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
