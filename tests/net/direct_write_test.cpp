// net::DirectWriter on a socketpair: gathers parts in order, stops at a full socket without
// blocking, writes nothing when detached, and survives a closed peer (no SIGPIPE).
#include "net/direct_write.h"

#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <string>

namespace {

using tandem::net::DirectWriter;

std::span<const uint8_t> bytes_of(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

std::string drain(int fd) {
  std::string out;
  char buffer[65536];
  ssize_t n;
  while ((n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT)) > 0) out.append(buffer, static_cast<size_t>(n));
  return out;
}

TEST(DirectWriter, GathersPartsInOrder) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  DirectWriter writer;
  EXPECT_EQ(writer.try_write(bytes_of("x")), 0u) << "detached: nothing written";
  writer.attach(fds[0]);
  const std::string header = "HEAD", payload = "payload";
  EXPECT_EQ(writer.try_write({bytes_of(header), bytes_of(""), bytes_of(payload)}), 11u);
  EXPECT_EQ(drain(fds[1]), "HEADpayload");
  writer.detach();
  EXPECT_FALSE(writer.attached());
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(DirectWriter, AFullSocketTakesWhatFitsWithoutBlocking) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  int small = 4096;
  ::setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  DirectWriter writer;
  writer.attach(fds[0]);
  const std::string big(4 << 20, 'b');
  const size_t first = writer.try_write(bytes_of(big));
  EXPECT_GT(first, 0u);
  EXPECT_LT(first, big.size()) << "a blocking write would have taken (or waited for) everything";
  EXPECT_EQ(writer.try_write(bytes_of(big)), 0u) << "full: EAGAIN, nothing written";
  EXPECT_EQ(drain(fds[1]).size(), first);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(DirectWriter, AnOwnCopySurvivesTheOwnersCloseAndAClosedPeerIsNoSignal) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  DirectWriter writer;
  writer.attach(fds[0], /*own_copy=*/true);
  ::close(fds[0]);  // the owner's descriptor; the writer's copy keeps the socket open
  EXPECT_EQ(writer.try_write(bytes_of("still")), 5u);
  EXPECT_EQ(drain(fds[1]), "still");
  ::close(fds[1]);
  EXPECT_EQ(writer.try_write(bytes_of("gone")), 0u) << "EPIPE is reported as 0, without SIGPIPE";
  writer.detach();
}

}  // namespace
