// virtio_blk: the shared virtio driver (guest/common/virtio.c) against a block device.
// Scans the 8 slots for a block device (id 2), negotiates VIRTIO_F_VERSION_1, sets up one
// 8-entry split queue and polls it: reads sectors 0/1/last and a 4-sector run, checks them
// against the pattern the test wrote into the image, writes sector 1 and reads it back,
// and checks that a read past the end gets VIRTIO_BLK_S_IOERR.
#include "guest.h"
#include "virtio.h"

#define SECTOR VIRTIO_BLK_SECTOR
#define BLK_T_IN VIRTIO_BLK_T_IN
#define BLK_T_OUT VIRTIO_BLK_T_OUT
#define BLK_S_OK VIRTIO_BLK_S_OK
#define BLK_S_IOERR VIRTIO_BLK_S_IOERR

static struct virtio_dev dev;
static struct virtq queue;
static uint8_t buffer[4 * SECTOR] __attribute__((aligned(16)));

// The byte the test wrote at `offset` of the image (see run_guest.py disk_pattern).
static uint8_t pattern_byte(uint64_t offset) {
  uint64_t sector = offset / SECTOR;
  if (offset % SECTOR < 4) return (uint8_t)(sector >> (8 * (offset % SECTOR)));
  return (uint8_t)(offset * 7 + sector * 13);
}

static uint32_t fnv1a(const uint8_t *p, unsigned n) {
  uint32_t h = 2166136261u;
  while (n--) h = (h ^ *p++) * 16777619u;
  return h;
}

static int matches_pattern(const uint8_t *p, uint64_t first_sector, unsigned sectors) {
  for (unsigned i = 0; i < sectors * SECTOR; i++)
    if (p[i] != pattern_byte(first_sector * SECTOR + i)) return 0;
  return 1;
}

static int init_device(void) {
  check_u64("transport-version", virtio_read32(&dev, VIRTIO_REG_VERSION), 2);
  virtio_write32(&dev, VIRTIO_REG_DEVICE_FEATURES_SEL, 1);
  check_u64("offers-version-1",
            virtio_read32(&dev, VIRTIO_REG_DEVICE_FEATURES) & VIRTIO_FEATURE_VERSION_1_HIGH,
            VIRTIO_FEATURE_VERSION_1_HIGH);
  const char *err = virtio_negotiate(&dev);
  if (err) {
    printf("FAIL %s\n", err);
    return 0;
  }
  virtio_write32(&dev, VIRTIO_REG_QUEUE_SEL, 0);
  check_u64("queue-not-ready-after-reset", virtio_read32(&dev, VIRTIO_REG_QUEUE_READY), 0);
  check_u64("queue-num-max-at-least-8",
            virtio_read32(&dev, VIRTIO_REG_QUEUE_NUM_MAX) >= VIRTQ_SIZE, 1);
  err = virtio_setup_queue(&dev, 0, &queue);
  if (err) {
    printf("FAIL %s\n", err);
    return 0;
  }
  virtio_driver_ok(&dev);
  return 1;
}

// Submits one request (header, data, status descriptors) and polls for its completion.
// Returns the status byte, or -1 if the device never answered. Also checks what the
// driver library hides: the returned head and the used-buffer interrupt bit.
static int do_request(uint32_t type, uint64_t sector, unsigned sectors) {
  static struct {
    uint32_t type, reserved;
    uint64_t sector;
  } header;
  static volatile uint8_t req_status;
  header.type = type;
  header.reserved = 0;
  header.sector = sector;
  req_status = 0xff;
  struct virtio_buf chain[3] = {
      {&header, sizeof header, 0},
      {buffer, sectors * SECTOR, type == BLK_T_IN},
      {&req_status, 1, 1},
  };
  uint32_t head = 0, isr = 0;
  if (virtq_transact(&dev, 0, &queue, chain, 3, &head, &isr) < 0) return -1;
  if (head != 0) printf("FAIL used ring returned head %u\n", head);
  if (!(isr & VIRTIO_INTERRUPT_USED_BUFFER))
    printf("FAIL interrupt status 0x%x lacks the used-buffer bit\n", isr);
  return req_status;
}

int main(void) {
  printf("virtio_blk: virtio-mmio block device\n");
  if (!virtio_find(VIRTIO_ID_BLOCK, &dev)) {
    printf("FAIL no virtio-blk device in the %d slots\n", VIRTIO_MMIO_SLOTS);
    return 2;
  }
  printf("found a virtio-blk device\n");
  if (!init_device()) return 3;
  uint64_t capacity = virtio_blk_capacity(&dev);
  printf("capacity: %lu sectors\n", capacity);
  check_u64("capacity-1mib", capacity, 2048);

  check_u64("read-sector-0-status", do_request(BLK_T_IN, 0, 1), BLK_S_OK);
  printf("sector 0: fnv1a=0x%08x\n", fnv1a(buffer, SECTOR));
  check_u64("read-sector-0-pattern", matches_pattern(buffer, 0, 1), 1);

  check_u64("read-sector-1-status", do_request(BLK_T_IN, 1, 1), BLK_S_OK);
  check_u64("read-sector-1-pattern", matches_pattern(buffer, 1, 1), 1);

  for (unsigned i = 0; i < SECTOR; i++) buffer[i] = (uint8_t)(0xa5 ^ i);
  uint32_t written = fnv1a(buffer, SECTOR);
  check_u64("write-sector-1-status", do_request(BLK_T_OUT, 1, 1), BLK_S_OK);
  memset(buffer, 0, SECTOR);
  check_u64("reread-sector-1-status", do_request(BLK_T_IN, 1, 1), BLK_S_OK);
  printf("sector 1 after write: fnv1a=0x%08x\n", fnv1a(buffer, SECTOR));
  check_u64("reread-sector-1-matches", fnv1a(buffer, SECTOR), written);

  check_u64("read-4-sectors-status", do_request(BLK_T_IN, 2, 4), BLK_S_OK);
  printf("sectors 2..5: fnv1a=0x%08x\n", fnv1a(buffer, 4 * SECTOR));
  check_u64("read-4-sectors-pattern", matches_pattern(buffer, 2, 4), 1);

  check_u64("read-last-sector-status", do_request(BLK_T_IN, capacity - 1, 1), BLK_S_OK);
  check_u64("read-last-sector-pattern", matches_pattern(buffer, capacity - 1, 1), 1);

  int past_end = do_request(BLK_T_IN, capacity, 1);
  printf("read past the end: status %d\n", past_end);
  check_u64("read-past-end-ioerr", past_end, BLK_S_IOERR);

  return check_summary("virtio_blk");
}
