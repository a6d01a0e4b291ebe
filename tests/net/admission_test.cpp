// net/admission: per-address and global caps, the allow-list, slots freed on release or
// destruction, and the accept backoff's growth.
#include "net/admission.h"

#include <gtest/gtest.h>

namespace tandem::net {
namespace {

using boost::asio::ip::make_address;

TEST(Admission, CapsPerAddressAndInAll) {
  Admission gate({3, 2, {}});
  std::string why;
  auto a1 = gate.admit(make_address("10.0.0.1"), why);
  auto a2 = gate.admit(make_address("10.0.0.1"), why);
  ASSERT_TRUE(a1 && a2);
  EXPECT_FALSE(gate.admit(make_address("10.0.0.1"), why));
  EXPECT_EQ(why, "too many unauthenticated connections from 10.0.0.1 (2)");
  EXPECT_FALSE(gate.admit(make_address("::ffff:10.0.0.1"), why)) << "a v4-mapped address is the same host";
  auto b1 = gate.admit(make_address("10.0.0.2"), why);
  ASSERT_TRUE(b1);
  EXPECT_FALSE(gate.admit(make_address("10.0.0.3"), why));
  EXPECT_EQ(why, "too many unauthenticated connections (3)");
  EXPECT_EQ(gate.pending(), 3u);
  EXPECT_EQ(gate.refused(), 3u);
  a1->release();
  a1.reset();  // a released slot's destructor frees nothing twice
  EXPECT_EQ(gate.pending(), 2u);
  EXPECT_TRUE(gate.admit(make_address("10.0.0.3"), why));  // the temporary is freed at once
  { auto moved = std::move(*a2); }
  EXPECT_EQ(gate.pending(), 1u);
  EXPECT_TRUE(gate.admit(make_address("10.0.0.1"), why));
}

TEST(Admission, AllowListAndBadSettings) {
  Admission gate({4, 4, {"192.0.2.7", "2001:db8::1"}});
  std::string why;
  EXPECT_TRUE(gate.admit(make_address("192.0.2.7"), why));
  EXPECT_TRUE(gate.admit(make_address("2001:db8::1"), why));
  EXPECT_FALSE(gate.admit(make_address("192.0.2.8"), why));
  EXPECT_EQ(why, "192.0.2.8 is not in the allow-list");
  EXPECT_THROW(Admission({4, 4, {"host.example"}}), std::invalid_argument);
  EXPECT_THROW(Admission({0, 4, {}}), std::invalid_argument);
  EXPECT_THROW(Admission({4, 0, {}}), std::invalid_argument);
}

TEST(AcceptBackoff, GrowsToOneSecondAndResets) {
  AcceptBackoff b;
  EXPECT_EQ(b.next().count(), 10);
  EXPECT_EQ(b.next().count(), 20);
  for (int i = 0; i < 20; ++i) (void)b.next();
  EXPECT_EQ(b.next().count(), 1000);
  b.reset();
  EXPECT_EQ(b.next().count(), 10);
}

}  // namespace
}  // namespace tandem::net
