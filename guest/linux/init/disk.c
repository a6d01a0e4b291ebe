// The Linux /init's disk: /dev/vda under guest/kv/persist.c (the store format both kv
// guests share). Linux's page cache would reorder SYNC's writes (records first, the
// superblock last), so the disk is opened O_SYNC: each pwrite(2) has reached the device
// when it returns.
#include "guest.h"
#include "kv.h"
#include "sys.h"

#define DISK_PATH "/dev/vda"

static int disk_fd = -1;

// Whole sectors, in chunks as the bare-metal guest's requests; retried on short transfers
// and EINTR.
int kv_block_io(int write, uint64_t sector, uint8_t *buf, unsigned sectors) {
  uint64_t offset = sector * KV_SECTOR;
  size_t left = (size_t)sectors * KV_SECTOR;
  while (left) {
    size_t chunk = KV_IO_CHUNK_SECTORS * KV_SECTOR;
    size_t n = left < chunk ? left : chunk;
    long done = write ? sys_pwrite(disk_fd, buf, n, offset) : sys_pread(disk_fd, buf, n, offset);
    if (done == -EINTR) continue;
    if (done <= 0) return 0;
    offset += (uint64_t)done;
    buf += done;
    left -= (size_t)done;
  }
  return 1;
}

int kv_disk_open(const char **note) {
  long fd = sys_open(DISK_PATH, O_RDWR | O_SYNC);
  if (fd < 0) {
    *note = "(no disk)";
    return 0;
  }
  uint64_t bytes = 0;
  if (sys_ioctl((int)fd, BLKGETSIZE64, &bytes) < 0) bytes = 0;
  disk_fd = (int)fd;
  *note = kv_disk_attach(bytes / KV_SECTOR);
  return 1;
}
