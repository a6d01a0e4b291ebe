// The bare-metal kv guest's disk: the first virtio-blk device, under persist.c.
#include "guest.h"
#include "kv.h"
#include "virtio.h"

_Static_assert(KV_SECTOR == VIRTIO_BLK_SECTOR, "the store counts in virtio-blk sectors");

static struct virtio_dev disk;
static struct virtq disk_queue;

int kv_block_io(int write, uint64_t sector, uint8_t *buf, unsigned sectors) {
  uint32_t type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN;
  while (sectors) {
    unsigned n = sectors < KV_IO_CHUNK_SECTORS ? sectors : KV_IO_CHUNK_SECTORS;
    if (virtio_blk_request(&disk, &disk_queue, type, sector, buf, n * KV_SECTOR) !=
        VIRTIO_BLK_S_OK)
      return 0;
    sector += n;
    buf += n * KV_SECTOR;
    sectors -= n;
  }
  return 1;
}

int kv_disk_open(const char **note) {
  if (!virtio_find(VIRTIO_ID_BLOCK, &disk)) {
    *note = "(no disk)";
    return 0;
  }
  const char *err = virtio_init_single_queue(&disk, &disk_queue);
  if (err) {
    printf("virtio-blk: %s\n", err);
    disk.base = 0;
    *note = "(no disk)";
    return 0;
  }
  *note = kv_disk_attach(virtio_blk_capacity(&disk));
  return 1;
}
