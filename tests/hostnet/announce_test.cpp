// The go-live announcement: a RARP request from the guest's MAC to the broadcast address,
// byte for byte the frame QEMU's announce-self sends (what switches learn the port from).
#include "hostnet/announce.h"

#include <gtest/gtest.h>

namespace tandem::hostnet {
namespace {

TEST(Announce, IsABroadcastRarpFromTheGuestsMac) {
  const std::array<uint8_t, 6> mac{0x52, 0x54, 0x00, 0x4b, 0x56, 0x01};
  const std::vector<uint8_t> f = rarp_announcement(mac);
  ASSERT_EQ(f.size(), 60u) << "the Ethernet minimum, padded";
  const std::vector<uint8_t> expected_head{
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff,  // to everyone
      0x52, 0x54, 0x00, 0x4b, 0x56, 0x01,  // from the guest
      0x80, 0x35,                          // RARP
      0x00, 0x01, 0x08, 0x00, 6, 4,        // Ethernet / IPv4
      0x00, 0x03,                          // request reverse
      0x52, 0x54, 0x00, 0x4b, 0x56, 0x01, 0, 0, 0, 0,  // sender: the guest's MAC, 0.0.0.0
      0x52, 0x54, 0x00, 0x4b, 0x56, 0x01, 0, 0, 0, 0,  // target: the same
  };
  EXPECT_EQ(std::vector<uint8_t>(f.begin(), f.begin() + 42), expected_head);
  for (size_t i = 42; i < f.size(); ++i) EXPECT_EQ(f[i], 0) << "padding at " << i;
}

}  // namespace
}  // namespace tandem::hostnet
