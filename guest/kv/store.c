// The in-RAM table: KV_SLOTS entries, open addressing with linear probing and tombstones.
// Every probe loop is bounded by KV_SLOTS, so even a table full of tombstones cannot hang.
#include "guest.h"
#include "kv.h"

static struct kv_entry table[KV_SLOTS];
static unsigned live_keys, tombstones;
static int dirty;

static uint32_t hash_key(const char *key, size_t len) {
  uint32_t h = 2166136261u;  // FNV-1a
  for (size_t i = 0; i < len; i++) h = (h ^ (uint8_t)key[i]) * 16777619u;
  return h;
}

int kv_key_valid(const char *key, size_t len) {
  if (len == 0 || len > KV_KEY_MAX) return 0;
  for (size_t i = 0; i < len; i++)
    if (key[i] < 0x21 || key[i] > 0x7e) return 0;
  return 1;
}

int kv_value_valid(const char *value, size_t len) {
  if (len == 0 || len > KV_VALUE_MAX) return 0;
  for (size_t i = 0; i < len; i++)
    if (value[i] < 0x20 || value[i] > 0x7e) return 0;
  return 1;
}

static int same_key(const struct kv_entry *e, const char *key, size_t len) {
  return e->key_len == len && memcmp(e->key, key, len) == 0;
}

// The slot holding `key`, or -1.
static int find_slot(const char *key, size_t len) {
  unsigned slot = hash_key(key, len) % KV_SLOTS;
  for (unsigned probes = 0; probes < KV_SLOTS; probes++, slot = (slot + 1) % KV_SLOTS) {
    const struct kv_entry *e = &table[slot];
    if (e->state == KV_SLOT_EMPTY) return -1;
    if (e->state == KV_SLOT_USED && same_key(e, key, len)) return (int)slot;
  }
  return -1;
}

enum kv_put_result kv_put(const char *key, size_t key_len, const char *value, size_t value_len) {
  int found = find_slot(key, key_len);
  struct kv_entry *e;
  enum kv_put_result result;
  if (found >= 0) {
    e = &table[found];
    result = KV_PUT_REPLACED;
  } else {
    if (live_keys >= KV_MAX_KEYS) return KV_PUT_FULL;
    // The first free slot of the chain: a tombstone is as good as an empty slot here,
    // since the key is known to be absent.
    unsigned slot = hash_key(key, key_len) % KV_SLOTS;
    while (table[slot].state == KV_SLOT_USED) slot = (slot + 1) % KV_SLOTS;
    e = &table[slot];
    if (e->state == KV_SLOT_DELETED) tombstones--;
    e->state = KV_SLOT_USED;
    e->key_len = (uint8_t)key_len;
    memcpy(e->key, key, key_len);
    live_keys++;
    result = KV_PUT_INSERTED;
  }
  e->value_len = (uint8_t)value_len;
  memcpy(e->value, value, value_len);
  dirty = 1;
  return result;
}

const struct kv_entry *kv_get(const char *key, size_t key_len) {
  int slot = find_slot(key, key_len);
  return slot < 0 ? 0 : &table[slot];
}

int kv_del(const char *key, size_t key_len) {
  int slot = find_slot(key, key_len);
  if (slot < 0) return 0;
  table[slot].state = KV_SLOT_DELETED;
  live_keys--;
  tombstones++;
  dirty = 1;
  return 1;
}

unsigned kv_count(void) { return live_keys; }
unsigned kv_tombstones(void) { return tombstones; }

void kv_clear(void) {
  for (unsigned i = 0; i < KV_SLOTS; i++) table[i].state = KV_SLOT_EMPTY;
  live_keys = tombstones = 0;
  dirty = 1;
}

const struct kv_entry *kv_next(unsigned *cursor) {
  while (*cursor < KV_SLOTS) {
    const struct kv_entry *e = &table[(*cursor)++];
    if (e->state == KV_SLOT_USED) return e;
  }
  return 0;
}

int kv_dirty(void) { return dirty; }
void kv_mark_clean(void) { dirty = 0; }
void kv_mark_dirty(void) { dirty = 1; }
