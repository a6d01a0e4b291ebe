#include "net/direct_write.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <unistd.h>

namespace tandem::net {

void DirectWriter::attach(int fd, bool own_copy) {
  detach();
  if (fd < 0) return;
  fd_ = own_copy ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : fd;
  owned_ = own_copy && fd_ >= 0;
}

void DirectWriter::detach() {
  if (owned_ && fd_ >= 0) ::close(fd_);
  fd_ = -1;
  owned_ = false;
}

size_t DirectWriter::try_write(std::initializer_list<std::span<const uint8_t>> parts) {
  if (fd_ < 0) return 0;
  iovec iov[8];
  size_t count = 0;
  for (const auto& part : parts) {
    if (part.empty()) continue;
    if (count == std::size(iov)) break;  // more than 8 parts: the rest goes the queued way
    iov[count++] = {const_cast<uint8_t*>(part.data()), part.size()};
  }
  if (count == 0) return 0;
  msghdr message{};
  message.msg_iov = iov;
  message.msg_iovlen = count;
  ssize_t n;
  do {
    n = ::sendmsg(fd_, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n > 0 ? static_cast<size_t>(n) : 0;
}

}  // namespace tandem::net
