// net_echo: drives the virtio-net device (id 1) bare-metal, for record/replay and device
// tests. It reads its MAC, MTU and link status from the config space, sends one greeting
// frame, then echoes every received frame back with the source and destination MAC
// addresses swapped, printing one line per frame. After NET_ECHO_FRAMES frames it passes.
// It polls the used rings (no interrupts), so received frames reach it at service points.
#include "guest.h"
#include "virtio.h"

#ifndef NET_ECHO_FRAMES
#define NET_ECHO_FRAMES 4
#endif

#define VIRTIO_ID_NET 1
#define NET_F_MTU (1u << 3)
#define NET_F_MAC (1u << 5)
#define NET_F_STATUS (1u << 16)
#define NET_HDR 12
#define BUF_BYTES 2048  // header + the largest frame for MTU 1500 (1518) fits

static struct virtio_dev net;
static struct virtq rxq, txq;
static uint8_t rx_bufs[VIRTQ_SIZE][BUF_BYTES] __attribute__((aligned(16)));
static uint8_t tx_buf[BUF_BYTES] __attribute__((aligned(16)));
static uint8_t mac[6];

static void post_rx(uint16_t i) {
  rxq.desc[i].addr = (uint64_t)(uintptr_t)rx_bufs[i];
  rxq.desc[i].len = BUF_BYTES;
  rxq.desc[i].flags = VIRTQ_DESC_F_WRITE;
  rxq.desc[i].next = 0;
  volatile struct virtq_avail *avail = &rxq.avail;
  avail->ring[avail->idx % VIRTQ_SIZE] = i;
  __asm__ volatile("fence rw, w" ::: "memory");
  avail->idx = (uint16_t)(avail->idx + 1);
  __asm__ volatile("fence w, w" ::: "memory");
}

static void transmit(const uint8_t *frame, uint32_t len) {
  memset(tx_buf, 0, NET_HDR);
  memcpy(tx_buf + NET_HDR, frame, len);
  struct virtio_buf chain[1] = {{tx_buf, NET_HDR + len, 0}};
  if (virtq_transact(&net, 1, &txq, chain, 1, 0, 0) < 0) {
    printf("FAIL transmit never completed\n");
    guest_exit(3);
  }
}

int main(void) {
  if (!virtio_find(VIRTIO_ID_NET, &net)) {
    printf("net: none\n");
    guest_exit(2);
  }
  if (virtio_read32(&net, VIRTIO_REG_VERSION) != 2) guest_exit(4);
  virtio_write32(&net, VIRTIO_REG_STATUS, 0);
  virtio_write32(&net, VIRTIO_REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
  virtio_write32(&net, VIRTIO_REG_DEVICE_FEATURES_SEL, 0);
  const uint32_t offered = virtio_read32(&net, VIRTIO_REG_DEVICE_FEATURES);
  const uint32_t wanted = NET_F_MTU | NET_F_MAC | NET_F_STATUS;
  if ((offered & wanted) != wanted) {
    printf("FAIL features offered 0x%x\n", offered);
    guest_exit(5);
  }
  virtio_write32(&net, VIRTIO_REG_DRIVER_FEATURES_SEL, 0);
  virtio_write32(&net, VIRTIO_REG_DRIVER_FEATURES, wanted);
  virtio_write32(&net, VIRTIO_REG_DRIVER_FEATURES_SEL, 1);
  virtio_write32(&net, VIRTIO_REG_DRIVER_FEATURES, VIRTIO_FEATURE_VERSION_1_HIGH);
  virtio_write32(&net, VIRTIO_REG_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
                                              VIRTIO_STATUS_FEATURES_OK);
  if (!(virtio_read32(&net, VIRTIO_REG_STATUS) & VIRTIO_STATUS_FEATURES_OK)) {
    printf("FAIL features refused\n");
    guest_exit(6);
  }
  const char *err = virtio_setup_queue(&net, 0, &rxq);
  if (!err) err = virtio_setup_queue(&net, 1, &txq);
  if (err) {
    printf("FAIL %s\n", err);
    guest_exit(7);
  }
  for (uint16_t i = 0; i < VIRTQ_SIZE; i++) post_rx(i);
  virtio_driver_ok(&net);
  virtio_write32(&net, VIRTIO_REG_QUEUE_NOTIFY, 0);

  for (int i = 0; i < 6; i++) mac[i] = mmio_read8(net.base + VIRTIO_REG_CONFIG + i);
  const uint16_t status = (uint16_t)(mmio_read8(net.base + VIRTIO_REG_CONFIG + 6) |
                                     mmio_read8(net.base + VIRTIO_REG_CONFIG + 7) << 8);
  const uint16_t mtu = (uint16_t)(mmio_read8(net.base + VIRTIO_REG_CONFIG + 10) |
                                  mmio_read8(net.base + VIRTIO_REG_CONFIG + 11) << 8);
  printf("net: mac %02x:%02x:%02x:%02x:%02x:%02x mtu %u link %s\n", mac[0], mac[1], mac[2], mac[3],
         mac[4], mac[5], mtu, (status & 1) ? "up" : "down");

  // A greeting: broadcast, our MAC, EtherType 0x88b5 (local experimental), "hello".
  uint8_t hello[64];
  memset(hello, 0, sizeof hello);
  memset(hello, 0xff, 6);
  memcpy(hello + 6, mac, 6);
  hello[12] = 0x88;
  hello[13] = 0xb5;
  memcpy(hello + 14, "hello", 5);
  transmit(hello, sizeof hello);

  static uint8_t frame[BUF_BYTES];
  for (int echoed = 0; echoed < NET_ECHO_FRAMES;) {
    volatile struct virtq_used *used = &rxq.used;
    if (used->idx == rxq.used_seen) continue;
    __asm__ volatile("fence r, rw" ::: "memory");
    const uint32_t head = used->ring[rxq.used_seen % VIRTQ_SIZE].id;
    const uint32_t len = used->ring[rxq.used_seen % VIRTQ_SIZE].len;
    rxq.used_seen++;
    virtio_write32(&net, VIRTIO_REG_INTERRUPT_ACK, virtio_read32(&net, VIRTIO_REG_INTERRUPT_STATUS));
    if (head >= VIRTQ_SIZE || len < NET_HDR + 14 || len > BUF_BYTES) {
      printf("rx: bad entry head %u len %u\n", head, len);
    } else {
      const uint32_t flen = len - NET_HDR;
      memcpy(frame, rx_bufs[head] + NET_HDR, flen);
      uint32_t sum = 0;
      for (uint32_t i = 0; i < flen; i++) sum = sum * 31 + frame[i];
      printf("rx: %u bytes sum %08x\n", flen, sum);
      memcpy(frame, frame + 6, 6);  // reply to the sender
      memcpy(frame + 6, mac, 6);
      transmit(frame, flen);
      echoed++;
    }
    post_rx((uint16_t)(head % VIRTQ_SIZE));
    virtio_write32(&net, VIRTIO_REG_QUEUE_NOTIFY, 0);
  }
  printf("net: echoed %d frames\n", NET_ECHO_FRAMES);
  guest_exit(0);
}
