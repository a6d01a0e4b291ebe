// tandem-kv: the key-value store both kv guests serve, the bare-metal one (guest/kv, on
// virtio-blk and the UART) and the Linux /init (guest/linux/init, on /dev/vda and the console).
// The shared parts, compiled unchanged into both:
//   store.c     the in-RAM table (open addressing, linear probing, tombstones)
//   persist.c   the on-disk format (superblock + packed records, CRC32) and SYNC
//   protocol.c  the line protocol: the banner, the command parser and dispatcher
// Each platform supplies the block device and the console below (bare metal: disk_virtio.c
// and kv.c; Linux: init/disk.c and init/main.c), and a guest.h with mem*, strlen.
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
#define KV_SECTOR 512
#define KV_IO_CHUNK_SECTORS 64  // the largest run SYNC writes at once (32 KiB)
// Loads the store from a disk of `capacity_sectors` the platform has opened. Returns what
// the banner says about the disk ("" when a store loaded).
const char *kv_disk_attach(uint64_t capacity_sectors);
// Writes every changed sector through to the disk. Returns NULL or the ERR reason.
const char *kv_disk_sync(void);
// Rebuilds the table without tombstones (serialises into the scratch image and reloads).
// Returns NULL, or what went wrong (cannot happen: the records are its own).
const char *kv_compact(void);

// ---- protocol.c ----
// A platform's own commands that end the session like QUIT (no argument, reply BYE).
struct kv_stop_command {
  const char *word;
  int code;  // what kv_serve returns for it
};
#define KV_STOP_QUIT 1
// Prints the banner "tandem-kv ready keys=N[ note]".
void kv_print_banner(const char *note);
// Serves the line protocol on the bytes `next_byte` returns until QUIT (KV_STOP_QUIT) or one
// of the `n_extra` commands in `extra` (its code).
int kv_serve(uint8_t (*next_byte)(void), const struct kv_stop_command *extra, size_t n_extra);

// ---- what each platform provides ----
// Looks for the disk and attaches it (kv_disk_attach). Returns 1 if a disk is attached;
// `note` gets what the banner says about the disk.
int kv_disk_open(const char **note);
// Reads (`write` 0) or writes `sectors` whole sectors at `sector`. Returns 1 on success.
int kv_block_io(int write, uint64_t sector, uint8_t *buf, unsigned sectors);
// Writes reply bytes to the console.
void kv_console_write(const char *p, size_t n);
