#pragma once
// Announcing a guest's MAC on the LAN after it moved to this host (a failover's go-live), so
// switches and bridges learn its new port before the first client frame: a RARP request
// from the guest's MAC to the broadcast address, as QEMU's announce-self sends. RARP needs
// no IP address, and nothing on the LAN answers it; only the source MAC matters.
#include <array>
#include <cstdint>
#include <vector>

namespace tandem::hostnet {

// One minimum-size (60-byte) Ethernet frame: broadcast, source `mac`, EtherType 0x8035,
// a RARP "request reverse" (opcode 3) naming `mac` as sender and target.
std::vector<uint8_t> rarp_announcement(const std::array<uint8_t, 6>& mac);

// How many announcements go-live sends (back to back: a lost frame is covered by the next,
// and the guest's own retransmissions teach the LAN as well).
inline constexpr int kAnnouncements = 3;

}  // namespace tandem::hostnet
