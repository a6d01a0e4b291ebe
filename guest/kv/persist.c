// The on-disk format (little-endian), written by SYNC, loaded at boot:
//
//   sector 0   superblock: u64 magic "TANDEMKV", u32 version (1), u32 key count,
//              u32 record bytes, u32 CRC32 of the record bytes, u64 generation (SYNCs so
//              far), u32 CRC32 of the 32 bytes before it; the rest of the sector is zero.
//   sector 1.. records, packed: u8 key length, u8 value length, key, value; the last
//              sector zero-padded.
//
// CRC32 is the zlib one (reflected 0xEDB88320), so host tools can check an image with
// Python's zlib.crc32. A superblock that is all zero or lacks the magic means a fresh disk;
// one whose checksums or records do not hold up is ignored as corrupt (the store starts
// empty and the next SYNC overwrites it).
//
// SYNC writes only the sectors that differ from what this guest knows is on the disk
// (a RAM mirror of the image it last read or wrote), records first and the superblock
// last, so the superblock never describes records that are not written yet.
//
// Both kv guests compile this file unchanged, so each reads the other's disks; the block
// device under it is the platform's kv_block_io (virtio-blk requests on bare metal,
// pread/pwrite on an O_SYNC /dev/vda under Linux, whose writes have reached the device
// when they return, so the order above holds there too).
#include "guest.h"
#include "kv.h"

#define SECTOR KV_SECTOR
#define SB_MAGIC 0x564b4d45444e4154ULL  // "TANDEMKV" read as a little-endian u64
#define SB_VERSION 1
#define RECORD_MAX (2 + KV_KEY_MAX + KV_VALUE_MAX)
#define DATA_MAX (KV_MAX_KEYS * RECORD_MAX)
#define IMAGE_SECTORS (1 + (DATA_MAX + SECTOR - 1) / SECTOR)

struct superblock {
  uint64_t magic;
  uint32_t version;
  uint32_t count;
  uint32_t data_bytes;
  uint32_t data_crc;
  uint64_t generation;
  uint32_t header_crc;  // over the fields above (32 bytes)
};
#define SB_HEADER_CRC_BYTES 32

static int attached;  // a disk is there (kv_disk_attach ran)
static uint64_t capacity_sectors;
static uint64_t generation;

// Two images: what the disk holds (as far as we know) and the one being built. SYNC swaps
// them when it is done.
static uint8_t image_a[IMAGE_SECTORS * SECTOR] __attribute__((aligned(16)));
static uint8_t image_b[IMAGE_SECTORS * SECTOR] __attribute__((aligned(16)));
static uint8_t *on_disk = image_a, *building = image_b;
static unsigned mirrored_sectors;  // leading sectors of `on_disk` known to equal the disk

// ---- CRC32 (zlib) ----
static uint32_t crc_table[256];

static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    crc_table[n] = c;
  }
}

static uint32_t crc32(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

// ---- records ----
// Packs every live entry after the superblock sector of `image`; returns the record bytes
// and zero-pads the rest of the last sector.
static uint32_t serialise(uint8_t *image) {
  uint8_t *out = image + SECTOR;
  unsigned cursor = 0;
  const struct kv_entry *e;
  while ((e = kv_next(&cursor)) != 0) {
    *out++ = e->key_len;
    *out++ = e->value_len;
    memcpy(out, e->key, e->key_len);
    out += e->key_len;
    memcpy(out, e->value, e->value_len);
    out += e->value_len;
  }
  uint32_t bytes = (uint32_t)(out - (image + SECTOR));
  while ((out - image) % SECTOR) *out++ = 0;
  return bytes;
}

// Loads `count` records from `data` into the (empty) table. Returns NULL or what is wrong.
static const char *parse_records(const uint8_t *data, uint32_t bytes, uint32_t count) {
  uint32_t at = 0;
  for (uint32_t i = 0; i < count; i++) {
    if (bytes - at < 2) return "record header past the end";
    uint8_t key_len = data[at], value_len = data[at + 1];
    at += 2;
    if ((uint32_t)key_len + value_len > bytes - at) return "record past the end";
    const char *key = (const char *)data + at, *value = key + key_len;
    if (!kv_key_valid(key, key_len)) return "bad key";
    if (!kv_value_valid(value, value_len)) return "bad value";
    if (kv_put(key, key_len, value, value_len) != KV_PUT_INSERTED) return "duplicate key";
    at += (uint32_t)key_len + value_len;
  }
  if (at != bytes) return "trailing bytes after the records";
  return 0;
}

const char *kv_compact(void) {
  int was_dirty = kv_dirty();
  unsigned count = kv_count();
  uint32_t bytes = serialise(building);
  kv_clear();
  const char *err = parse_records(building + SECTOR, bytes, count);
  if (!was_dirty) kv_mark_clean();
  return err;
}

static int all_zero(const uint8_t *p, size_t n) {
  while (n--)
    if (*p++) return 0;
  return 1;
}

// Reads and checks the store; on any problem the table stays empty. Returns the banner
// note.
static const char *load_store(void) {
  if (capacity_sectors < 1 || !kv_block_io(0, 0, on_disk, 1))
    return "(fresh disk: unreadable superblock)";
  mirrored_sectors = 1;
  struct superblock sb;
  memcpy(&sb, on_disk, sizeof sb);
  if (sb.magic != SB_MAGIC)
    return all_zero(on_disk, SECTOR) ? "(fresh disk)" : "(fresh disk: foreign data)";
  if (crc32(on_disk, SB_HEADER_CRC_BYTES) != sb.header_crc)
    return "(corrupt store ignored: bad superblock checksum)";
  if (sb.version != SB_VERSION) return "(corrupt store ignored: unknown version)";
  unsigned data_sectors = (sb.data_bytes + SECTOR - 1) / SECTOR;
  if (sb.count > KV_MAX_KEYS || sb.data_bytes > DATA_MAX ||
      1 + (uint64_t)data_sectors > capacity_sectors)
    return "(corrupt store ignored: bad sizes)";
  if (!kv_block_io(0, 1, on_disk + SECTOR, data_sectors))
    return "(corrupt store ignored: read error)";
  mirrored_sectors = 1 + data_sectors;
  if (crc32(on_disk + SECTOR, sb.data_bytes) != sb.data_crc)
    return "(corrupt store ignored: bad record checksum)";
  const char *err = parse_records(on_disk + SECTOR, sb.data_bytes, sb.count);
  if (err) {
    kv_clear();
    return "(corrupt store ignored: bad records)";
  }
  generation = sb.generation;
  kv_mark_clean();
  return "";
}

const char *kv_disk_attach(uint64_t sectors) {
  crc_init();
  attached = 1;
  capacity_sectors = sectors;
  const char *note = load_store();
  // A disk without a valid store gets one at the first SYNC, even an empty one.
  if (*note) kv_mark_dirty();
  return note;
}

const char *kv_disk_sync(void) {
  if (!attached) return "no disk";
  if (!kv_dirty()) return 0;
  uint32_t data_bytes = serialise(building);
  unsigned sectors = 1 + (data_bytes + SECTOR - 1) / SECTOR;
  if (sectors > capacity_sectors) return "disk full";

  struct superblock sb = {SB_MAGIC, SB_VERSION, kv_count(), data_bytes,
                          crc32(building + SECTOR, data_bytes), generation + 1, 0};
  memset(building, 0, SECTOR);
  memcpy(building, &sb, sizeof sb);
  sb.header_crc = crc32(building, SB_HEADER_CRC_BYTES);
  memcpy(building, &sb, sizeof sb);

  // Records: runs of sectors that differ from the mirror.
  unsigned s = 1;
  while (s < sectors) {
    if (s < mirrored_sectors && memcmp(building + s * SECTOR, on_disk + s * SECTOR, SECTOR) == 0) {
      s++;
      continue;
    }
    unsigned run = 1;
    while (s + run < sectors && run < KV_IO_CHUNK_SECTORS &&
           !(s + run < mirrored_sectors &&
             memcmp(building + (s + run) * SECTOR, on_disk + (s + run) * SECTOR, SECTOR) == 0))
      run++;
    if (!kv_block_io(1, s, building + s * SECTOR, run)) {
      mirrored_sectors = 0;  // the disk is now in an unknown state
      return "io error";
    }
    s += run;
  }
  // The superblock last: it commits the records written above.
  if (!kv_block_io(1, 0, building, 1)) {
    mirrored_sectors = 0;
    return "io error";
  }
  uint8_t *old = on_disk;
  on_disk = building;
  building = old;
  mirrored_sectors = sectors;  // later sectors of the new mirror were never read
  generation++;
  kv_mark_clean();
  return 0;
}
