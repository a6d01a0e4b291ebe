// Shared virtio-mmio v2 driver; see virtio.h.
#include "virtio.h"

// Polls this many times before declaring a request lost. On QEMU a completion takes a few
// thousand polls; the bound only keeps a broken device from hanging the guest forever.
#define COMPLETION_SPIN_LIMIT 200000000ULL

int virtio_find(uint32_t device_id, struct virtio_dev *out) {
  for (unsigned slot = 0; slot < VIRTIO_MMIO_SLOTS; slot++) {
    uintptr_t base = VIRTIO_MMIO_BASE + (uintptr_t)slot * VIRTIO_MMIO_STRIDE;
    if (mmio_read32(base + VIRTIO_REG_MAGIC) == VIRTIO_MAGIC &&
        mmio_read32(base + VIRTIO_REG_DEVICE_ID) == device_id) {
      out->base = base;
      out->slot = slot;
      return 1;
    }
  }
  out->base = 0;
  return 0;
}

const char *virtio_negotiate(struct virtio_dev *d) {
  if (virtio_read32(d, VIRTIO_REG_VERSION) != 2) return "not a virtio-mmio version 2 transport";
  virtio_write32(d, VIRTIO_REG_STATUS, 0);  // reset
  virtio_write32(d, VIRTIO_REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
  virtio_write32(d, VIRTIO_REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  virtio_write32(d, VIRTIO_REG_DEVICE_FEATURES_SEL, 1);
  if (!(virtio_read32(d, VIRTIO_REG_DEVICE_FEATURES) & VIRTIO_FEATURE_VERSION_1_HIGH))
    return "device does not offer VIRTIO_F_VERSION_1";
  // Only VERSION_1: no optional features, so every request keeps its basic layout.
  virtio_write32(d, VIRTIO_REG_DRIVER_FEATURES_SEL, 0);
  virtio_write32(d, VIRTIO_REG_DRIVER_FEATURES, 0);
  virtio_write32(d, VIRTIO_REG_DRIVER_FEATURES_SEL, 1);
  virtio_write32(d, VIRTIO_REG_DRIVER_FEATURES, VIRTIO_FEATURE_VERSION_1_HIGH);
  virtio_write32(d, VIRTIO_REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                           VIRTIO_STATUS_FEATURES_OK);
  if (!(virtio_read32(d, VIRTIO_REG_STATUS) & VIRTIO_STATUS_FEATURES_OK))
    return "device refused our features";
  return 0;
}

static void write_addr(struct virtio_dev *d, unsigned low_reg, const volatile void *p) {
  uint64_t a = (uint64_t)(uintptr_t)p;
  virtio_write32(d, low_reg, (uint32_t)a);
  virtio_write32(d, low_reg + 4, (uint32_t)(a >> 32));
}

const char *virtio_setup_queue(struct virtio_dev *d, unsigned index, struct virtq *q) {
  memset(q, 0, sizeof *q);
  virtio_write32(d, VIRTIO_REG_QUEUE_SEL, index);
  if (virtio_read32(d, VIRTIO_REG_QUEUE_READY) != 0) return "queue already in use";
  if (virtio_read32(d, VIRTIO_REG_QUEUE_NUM_MAX) < VIRTQ_SIZE) return "queue too small";
  virtio_write32(d, VIRTIO_REG_QUEUE_NUM, VIRTQ_SIZE);
  write_addr(d, VIRTIO_REG_QUEUE_DESC_LOW, q->desc);
  write_addr(d, VIRTIO_REG_QUEUE_DRIVER_LOW, &q->avail);
  write_addr(d, VIRTIO_REG_QUEUE_DEVICE_LOW, &q->used);
  virtio_write32(d, VIRTIO_REG_QUEUE_READY, 1);
  return 0;
}

void virtio_driver_ok(struct virtio_dev *d) {
  virtio_write32(d, VIRTIO_REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                           VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

const char *virtio_init_single_queue(struct virtio_dev *d, struct virtq *q) {
  const char *err = virtio_negotiate(d);
  if (!err) err = virtio_setup_queue(d, 0, q);
  if (err) return err;
  virtio_driver_ok(d);
  return 0;
}

long virtq_transact(struct virtio_dev *d, unsigned index, struct virtq *q,
                    const struct virtio_buf *bufs, unsigned count, uint32_t *head_out,
                    uint32_t *isr_out) {
  if (count == 0 || count > VIRTQ_SIZE) {
    printf("FAIL virtq_transact: %u buffers\n", count);
    return -1;
  }
  // One request in flight: the chain always starts at descriptor 0.
  for (unsigned i = 0; i < count; i++) {
    volatile struct virtq_desc *desc = &q->desc[i];
    desc->addr = (uint64_t)(uintptr_t)bufs[i].addr;
    desc->len = bufs[i].len;
    desc->flags = (uint16_t)((i + 1 < count ? VIRTQ_DESC_F_NEXT : 0) |
                             (bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0));
    desc->next = (uint16_t)(i + 1 < count ? i + 1 : 0);
  }
  volatile struct virtq_avail *avail = &q->avail;
  avail->ring[avail->idx % VIRTQ_SIZE] = 0;
  __asm__ volatile("fence rw, w" ::: "memory");  // descriptors before the index
  avail->idx = (uint16_t)(avail->idx + 1);
  __asm__ volatile("fence w, w" ::: "memory");  // index before the notification
  virtio_write32(d, VIRTIO_REG_QUEUE_NOTIFY, index);

  volatile struct virtq_used *used = &q->used;
  for (uint64_t spins = 0; used->idx == q->used_seen; spins++) {
    if (spins > COMPLETION_SPIN_LIMIT) {
      printf("FAIL virtio request never completed\n");
      return -1;
    }
  }
  __asm__ volatile("fence r, rw" ::: "memory");  // the index before the entry it covers
  uint32_t head = used->ring[q->used_seen % VIRTQ_SIZE].id;
  uint32_t written = used->ring[q->used_seen % VIRTQ_SIZE].len;
  q->used_seen++;
  uint32_t isr = virtio_read32(d, VIRTIO_REG_INTERRUPT_STATUS);
  virtio_write32(d, VIRTIO_REG_INTERRUPT_ACK, isr);
  if (head_out) *head_out = head;
  if (isr_out) *isr_out = isr;
  return (long)written;
}

uint64_t virtio_blk_capacity(const struct virtio_dev *d) {
  return mmio_read64(d->base + VIRTIO_REG_CONFIG);
}

struct blk_req_header {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static struct blk_req_header blk_header;
static volatile uint8_t blk_status;

int virtio_blk_request(struct virtio_dev *d, struct virtq *q, uint32_t type, uint64_t sector,
                       volatile void *buf, uint32_t bytes) {
  blk_header.type = type;
  blk_header.reserved = 0;
  blk_header.sector = sector;
  blk_status = 0xff;
  struct virtio_buf chain[3] = {
      {&blk_header, sizeof blk_header, 0},
      {buf, bytes, type == VIRTIO_BLK_T_IN},
      {&blk_status, 1, 1},
  };
  if (virtq_transact(d, 0, q, chain, 3, 0, 0) < 0) return -1;
  return blk_status;
}

long virtio_rng_read(struct virtio_dev *d, struct virtq *q, volatile void *buf, uint32_t len) {
  struct virtio_buf chain[1] = {{buf, len, 1}};
  long written = virtq_transact(d, 0, q, chain, 1, 0, 0);
  if (written > (long)len) return -1;  // a device that claims more than we offered
  return written;
}
