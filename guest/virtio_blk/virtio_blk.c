// virtio_blk: a minimal virtio 1.x driver over the virtio-mmio version 2 transport.
// Scans the 8 slots for a block device (id 2), negotiates VIRTIO_F_VERSION_1, sets up one
// 8-entry split queue and polls it: reads sectors 0/1/last and a 4-sector run, checks them
// against the pattern the test wrote into the image, writes sector 1 and reads it back,
// and checks that a read past the end gets VIRTIO_BLK_S_IOERR.
#include "guest.h"

#define VIRTIO_MAGIC 0x74726976u  // "virt"
#define REG_MAGIC 0x000
#define REG_VERSION 0x004
#define REG_DEVICE_ID 0x008
#define REG_DEVICE_FEATURES 0x010
#define REG_DEVICE_FEATURES_SEL 0x014
#define REG_DRIVER_FEATURES 0x020
#define REG_DRIVER_FEATURES_SEL 0x024
#define REG_QUEUE_SEL 0x030
#define REG_QUEUE_NUM_MAX 0x034
#define REG_QUEUE_NUM 0x038
#define REG_QUEUE_READY 0x044
#define REG_QUEUE_NOTIFY 0x050
#define REG_INTERRUPT_STATUS 0x060
#define REG_INTERRUPT_ACK 0x064
#define REG_STATUS 0x070
#define REG_QUEUE_DESC_LOW 0x080
#define REG_QUEUE_DESC_HIGH 0x084
#define REG_QUEUE_DRIVER_LOW 0x090
#define REG_QUEUE_DRIVER_HIGH 0x094
#define REG_QUEUE_DEVICE_LOW 0x0a0
#define REG_QUEUE_DEVICE_HIGH 0x0a4
#define REG_CONFIG 0x100  // virtio-blk: u64 capacity in 512-byte sectors

#define STATUS_ACKNOWLEDGE 1
#define STATUS_DRIVER 2
#define STATUS_DRIVER_OK 4
#define STATUS_FEATURES_OK 8
#define DEVICE_ID_BLOCK 2
#define FEATURE_VERSION_1_HIGH (1u << 0)  // feature bit 32

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define BLK_T_IN 0
#define BLK_T_OUT 1
#define BLK_S_OK 0
#define BLK_S_IOERR 1
#define SECTOR 512
#define QUEUE_SIZE 8

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct virtq_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[QUEUE_SIZE];
  uint16_t used_event;
};
struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};
struct virtq_used {
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[QUEUE_SIZE];
  uint16_t avail_event;
};
struct blk_req_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};

static struct virtq_desc desc[QUEUE_SIZE] __attribute__((aligned(16)));
static struct virtq_avail avail __attribute__((aligned(16)));
static struct virtq_used used __attribute__((aligned(16)));
static struct blk_req_header header;
static uint8_t buffer[4 * SECTOR] __attribute__((aligned(16)));
static volatile uint8_t req_status;

static uintptr_t dev;
static uint16_t used_seen;

static uint32_t reg_read(unsigned off) { return mmio_read32(dev + off); }
static void reg_write(unsigned off, uint32_t v) { mmio_write32(dev + off, v); }

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

static int find_device(void) {
  for (int slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
    uintptr_t base = VIRTIO_MMIO_BASE + (uintptr_t)slot * VIRTIO_MMIO_STRIDE;
    if (mmio_read32(base + REG_MAGIC) == VIRTIO_MAGIC &&
        mmio_read32(base + REG_DEVICE_ID) == DEVICE_ID_BLOCK) {
      dev = base;
      return 1;
    }
  }
  return 0;
}

static int init_device(void) {
  check_u64("transport-version", reg_read(REG_VERSION), 2);
  reg_write(REG_STATUS, 0);  // reset
  reg_write(REG_STATUS, STATUS_ACKNOWLEDGE);
  reg_write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  reg_write(REG_DEVICE_FEATURES_SEL, 1);
  uint32_t high = reg_read(REG_DEVICE_FEATURES);
  check_u64("offers-version-1", high & FEATURE_VERSION_1_HIGH, FEATURE_VERSION_1_HIGH);
  // Accept only VERSION_1: no optional features, so the request layout is the basic one.
  reg_write(REG_DRIVER_FEATURES_SEL, 0);
  reg_write(REG_DRIVER_FEATURES, 0);
  reg_write(REG_DRIVER_FEATURES_SEL, 1);
  reg_write(REG_DRIVER_FEATURES, FEATURE_VERSION_1_HIGH);
  reg_write(REG_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
  if (!(reg_read(REG_STATUS) & STATUS_FEATURES_OK)) {
    printf("FAIL device refused our features\n");
    return 0;
  }
  reg_write(REG_QUEUE_SEL, 0);
  check_u64("queue-not-ready-after-reset", reg_read(REG_QUEUE_READY), 0);
  uint32_t max = reg_read(REG_QUEUE_NUM_MAX);
  check_u64("queue-num-max-at-least-8", max >= QUEUE_SIZE, 1);
  reg_write(REG_QUEUE_NUM, QUEUE_SIZE);
  uint64_t d = (uint64_t)(uintptr_t)desc, a = (uint64_t)(uintptr_t)&avail,
           u = (uint64_t)(uintptr_t)&used;
  reg_write(REG_QUEUE_DESC_LOW, (uint32_t)d);
  reg_write(REG_QUEUE_DESC_HIGH, (uint32_t)(d >> 32));
  reg_write(REG_QUEUE_DRIVER_LOW, (uint32_t)a);
  reg_write(REG_QUEUE_DRIVER_HIGH, (uint32_t)(a >> 32));
  reg_write(REG_QUEUE_DEVICE_LOW, (uint32_t)u);
  reg_write(REG_QUEUE_DEVICE_HIGH, (uint32_t)(u >> 32));
  reg_write(REG_QUEUE_READY, 1);
  reg_write(REG_STATUS,
            STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
  return 1;
}

// Submits one request (header, data, status descriptors) and polls for its completion.
// Returns the status byte, or -1 if the device never answered.
static int do_request(uint32_t type, uint64_t sector, unsigned sectors) {
  header.type = type;
  header.reserved = 0;
  header.sector = sector;
  req_status = 0xff;
  desc[0] = (struct virtq_desc){(uint64_t)(uintptr_t)&header, sizeof header, VIRTQ_DESC_F_NEXT, 1};
  desc[1] = (struct virtq_desc){(uint64_t)(uintptr_t)buffer, sectors * SECTOR,
                                (uint16_t)(VIRTQ_DESC_F_NEXT | (type == BLK_T_IN ? VIRTQ_DESC_F_WRITE : 0)), 2};
  desc[2] = (struct virtq_desc){(uint64_t)(uintptr_t)&req_status, 1, VIRTQ_DESC_F_WRITE, 0};
  volatile struct virtq_avail *va = &avail;
  va->ring[va->idx % QUEUE_SIZE] = 0;
  __asm__ volatile("fence rw, w" ::: "memory");  // descriptors before the index
  va->idx = (uint16_t)(va->idx + 1);
  __asm__ volatile("fence w, w" ::: "memory");  // index before the notification
  reg_write(REG_QUEUE_NOTIFY, 0);

  volatile struct virtq_used *vu = &used;
  for (uint64_t spins = 0; vu->idx == used_seen; spins++) {
    if (spins > 200000000ULL) {
      printf("FAIL request never completed\n");
      return -1;
    }
  }
  __asm__ volatile("fence r, rw" ::: "memory");
  uint32_t head = vu->ring[used_seen % QUEUE_SIZE].id;
  used_seen++;
  if (head != 0) printf("FAIL used ring returned head %u\n", head);
  uint32_t isr = reg_read(REG_INTERRUPT_STATUS);
  reg_write(REG_INTERRUPT_ACK, isr);
  if (!(isr & 1)) printf("FAIL interrupt status 0x%x lacks the used-buffer bit\n", isr);
  return req_status;
}

int main(void) {
  printf("virtio_blk: virtio-mmio block device\n");
  if (!find_device()) {
    printf("FAIL no virtio-blk device in the %d slots\n", VIRTIO_MMIO_SLOTS);
    return 2;
  }
  printf("found a virtio-blk device\n");
  if (!init_device()) return 3;
  uint64_t capacity = mmio_read64(dev + REG_CONFIG);
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
