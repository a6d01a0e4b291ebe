// A small virtio 1.x driver over the virtio-mmio version 2 transport, shared by the guests:
// slot scan, reset + feature negotiation, one split virtqueue per struct virtq, one request
// in flight at a time, completion by polling the used ring (a request on Tandem completes
// inside the notify; on QEMU within microseconds). Device helpers: virtio-blk sector
// requests and virtio-rng reads.
#pragma once
#include <stdint.h>

#include "guest.h"

// ---- transport registers (virtio-mmio version 2) ----
#define VIRTIO_MAGIC 0x74726976u  // "virt"
#define VIRTIO_REG_MAGIC 0x000
#define VIRTIO_REG_VERSION 0x004
#define VIRTIO_REG_DEVICE_ID 0x008
#define VIRTIO_REG_DEVICE_FEATURES 0x010
#define VIRTIO_REG_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_REG_DRIVER_FEATURES 0x020
#define VIRTIO_REG_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_REG_QUEUE_SEL 0x030
#define VIRTIO_REG_QUEUE_NUM_MAX 0x034
#define VIRTIO_REG_QUEUE_NUM 0x038
#define VIRTIO_REG_QUEUE_READY 0x044
#define VIRTIO_REG_QUEUE_NOTIFY 0x050
#define VIRTIO_REG_INTERRUPT_STATUS 0x060
#define VIRTIO_REG_INTERRUPT_ACK 0x064
#define VIRTIO_REG_STATUS 0x070
#define VIRTIO_REG_QUEUE_DESC_LOW 0x080
#define VIRTIO_REG_QUEUE_DESC_HIGH 0x084
#define VIRTIO_REG_QUEUE_DRIVER_LOW 0x090
#define VIRTIO_REG_QUEUE_DRIVER_HIGH 0x094
#define VIRTIO_REG_QUEUE_DEVICE_LOW 0x0a0
#define VIRTIO_REG_QUEUE_DEVICE_HIGH 0x0a4
#define VIRTIO_REG_CONFIG 0x100

#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_FEATURE_VERSION_1_HIGH (1u << 0)  // feature bit 32
#define VIRTIO_INTERRUPT_USED_BUFFER 1

#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4

// ---- split virtqueue ----
#define VIRTQ_SIZE 8  // every device we drive accepts at least 8
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2

struct virtq_desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
struct virtq_avail {
  uint16_t flags;
  uint16_t idx;
  uint16_t ring[VIRTQ_SIZE];
  uint16_t used_event;
};
struct virtq_used_elem {
  uint32_t id;
  uint32_t len;
};
struct virtq_used {
  uint16_t flags;
  uint16_t idx;
  struct virtq_used_elem ring[VIRTQ_SIZE];
  uint16_t avail_event;
};

// One queue's rings plus the driver's view of how far the device has got.
struct virtq {
  struct virtq_desc desc[VIRTQ_SIZE] __attribute__((aligned(16)));
  struct virtq_avail avail __attribute__((aligned(16)));
  struct virtq_used used __attribute__((aligned(16)));
  uint16_t used_seen;
};

struct virtio_dev {
  uintptr_t base;  // 0 = none found
  unsigned slot;
};

// A buffer of a request: `device_writes` marks buffers the device fills in.
struct virtio_buf {
  const volatile void *addr;
  uint32_t len;
  int device_writes;
};

static inline uint32_t virtio_read32(const struct virtio_dev *d, unsigned off) {
  return mmio_read32(d->base + off);
}
static inline void virtio_write32(const struct virtio_dev *d, unsigned off, uint32_t v) {
  mmio_write32(d->base + off, v);
}

// Finds the first slot holding device `device_id`; returns 0 when there is none.
int virtio_find(uint32_t device_id, struct virtio_dev *out);
// Reset, ACKNOWLEDGE, DRIVER, accept VERSION_1 and nothing else, FEATURES_OK. Returns NULL
// on success or what went wrong.
const char *virtio_negotiate(struct virtio_dev *d);
// Sets up queue `index` over `q` (VIRTQ_SIZE entries). Returns NULL or what went wrong.
const char *virtio_setup_queue(struct virtio_dev *d, unsigned index, struct virtq *q);
// Negotiate + one queue + DRIVER_OK: the whole bring-up of a one-queue device.
const char *virtio_init_single_queue(struct virtio_dev *d, struct virtq *q);
void virtio_driver_ok(struct virtio_dev *d);

// Submits one descriptor chain (1..VIRTQ_SIZE buffers) on queue `index` and polls for its
// completion; acknowledges the interrupt. Returns the number of bytes the device wrote, or
// -1 if it never answered (the message says why). `head_out` (optional) receives the
// descriptor id the device returned; `isr_out` (optional) the interrupt status read.
long virtq_transact(struct virtio_dev *d, unsigned index, struct virtq *q,
                    const struct virtio_buf *bufs, unsigned count, uint32_t *head_out,
                    uint32_t *isr_out);

// ---- virtio-blk ----
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_SECTOR 512

uint64_t virtio_blk_capacity(const struct virtio_dev *d);  // in 512-byte sectors
// One read (T_IN) or write (T_OUT) of `bytes` (a multiple of 512) at `sector`. Returns the
// device's status byte (VIRTIO_BLK_S_*), or -1 if the request never completed.
int virtio_blk_request(struct virtio_dev *d, struct virtq *q, uint32_t type, uint64_t sector,
                       volatile void *buf, uint32_t bytes);

// ---- virtio-rng ----
// Fills up to `len` bytes of `buf` with entropy; returns how many the device gave, or -1.
long virtio_rng_read(struct virtio_dev *d, struct virtq *q, volatile void *buf, uint32_t len);
