#include "hostnet/announce.h"

#include <algorithm>

namespace tandem::hostnet {

std::vector<uint8_t> rarp_announcement(const std::array<uint8_t, 6>& mac) {
  std::vector<uint8_t> f(60, 0);  // zero padding to the Ethernet minimum
  std::fill_n(f.begin(), 6, 0xff);                 // destination: broadcast
  std::copy(mac.begin(), mac.end(), f.begin() + 6);  // source: the guest
  f[12] = 0x80, f[13] = 0x35;                      // EtherType RARP
  f[14] = 0x00, f[15] = 0x01;                      // hardware: Ethernet
  f[16] = 0x08, f[17] = 0x00;                      // protocol: IPv4
  f[18] = 6, f[19] = 4;                            // address lengths
  f[20] = 0x00, f[21] = 0x03;                      // opcode 3: request reverse
  std::copy(mac.begin(), mac.end(), f.begin() + 22);  // sender hardware address (IPv4 0.0.0.0)
  std::copy(mac.begin(), mac.end(), f.begin() + 32);  // target hardware address (IPv4 0.0.0.0)
  return f;
}

}  // namespace tandem::hostnet
