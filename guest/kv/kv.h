// tandem-kv: the interactive key-value store guest. Three parts:
//   store.c    the in-RAM table (open addressing, linear probing, tombstones)
//   persist.c  the on-disk format on virtio-blk (superblock + packed records, CRC32)
//   kv.c       the console: interrupt-driven UART input, the line protocol, main
#pragma once
#include <stddef.h>
#include <stdint.h>

#define KV_KEY_MAX 32
#define KV_VALUE_MAX 200
#define KV_SLOTS 4096
#define KV_MAX_KEYS 3072  // 75% load: probe chains stay short

// ---- store.c ----
struct kv_entry {
  uint8_t state;  // KV_SLOT_*
  uint8_t key_len;
  uint8_t value_len;
  char key[KV_KEY_MAX];
  char value[KV_VALUE_MAX];
};
#define KV_SLOT_EMPTY 0
#define KV_SLOT_USED 1
#define KV_SLOT_DELETED 2  // tombstone: keeps probe chains through it intact

enum kv_put_result { KV_PUT_INSERTED, KV_PUT_REPLACED, KV_PUT_FULL };

int kv_key_valid(const char *key, size_t len);      // 1..32 bytes of 0x21..0x7e
int kv_value_valid(const char *value, size_t len);  // 1..200 bytes of 0x20..0x7e
// Callers validate keys and values first.
enum kv_put_result kv_put(const char *key, size_t key_len, const char *value, size_t value_len);
const struct kv_entry *kv_get(const char *key, size_t key_len);
int kv_del(const char *key, size_t key_len);  // 1 if it was there
unsigned kv_count(void);
void kv_clear(void);
// The live entries in slot order; `*cursor` starts at 0. Returns NULL at the end.
const struct kv_entry *kv_next(unsigned *cursor);
// True once an operation changed the contents since kv_mark_clean().
int kv_dirty(void);
void kv_mark_clean(void);
void kv_mark_dirty(void);
// Tombstones slow lookups down; the caller rebuilds the table when this gets large.
unsigned kv_tombstones(void);

// ---- persist.c ----
// Looks for a virtio-blk device and loads the store from it. Returns 1 if a disk is
// attached; `note` gets what the banner says about the disk ("" when a store loaded).
int kv_disk_open(const char **note);
// Writes every changed sector through to the disk. Returns NULL or the ERR reason.
const char *kv_disk_sync(void);
// Rebuilds the table without tombstones (serialises into the scratch image and reloads).
void kv_compact(void);
