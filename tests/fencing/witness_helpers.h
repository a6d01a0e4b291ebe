#pragma once
// Raw-socket helpers for the witness tests: send exactly the bytes a test chooses (captured,
// forged, oversize) and read what comes back, every step bounded by a timeout.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "fencing/witness/protocol.h"
#include "proto/fencing.pb.h"

namespace tandem::fencing::testing {

// A TCP listener on 127.0.0.1 and a free port (stored in `*port`); -1 if it cannot listen.
inline int listen_local(uint16_t* port, int backlog = 4) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  *port = ntohs(addr.sin_port);
  return fd;
}

// `source` (another loopback address such as "127.0.0.2") plays a second client host.
inline int connect_local(uint16_t port, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                         const char* source = nullptr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (source != nullptr) {
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source, &from.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&from), sizeof from) != 0) {
      ::close(fd);
      return -1;
    }
  }
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Everything the peer sends until it closes (or the receive timeout passes: `timed_out`).
struct Received {
  std::string bytes;
  bool timed_out = false;
};
inline Received read_until_close(int fd) {
  Received r;
  char buffer[8192];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      r.bytes.append(buffer, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) r.timed_out = true;
    return r;
  }
}

// One exchange with raw bytes: connect, send, read until the witness closes.
inline Received exchange(uint16_t port, const std::string& bytes) {
  const int fd = connect_local(port);
  if (fd < 0) return {"", true};
  send_all(fd, bytes);
  Received r = read_until_close(fd);
  ::close(fd);
  return r;
}

// Decodes a reply frame; nullopt if it is not a whole, authentic one.
inline std::optional<wire::WitnessReply> open_reply(const std::string& psk, const std::string& frame) {
  if (frame.size() < witness::kHeaderBytes + witness::kMacBytes) return std::nullopt;
  std::array<uint8_t, witness::kHeaderBytes> header{};
  for (size_t i = 0; i < header.size(); ++i) header[i] = static_cast<uint8_t>(frame[i]);
  const uint32_t size = witness::body_length(header);
  if (size == 0 || frame.size() != witness::kHeaderBytes + size + witness::kMacBytes) return std::nullopt;
  const std::string body = frame.substr(witness::kHeaderBytes, size);
  if (!witness::mac_matches(psk, witness::Direction::Reply, body, frame.substr(witness::kHeaderBytes + size))) {
    return std::nullopt;
  }
  wire::WitnessReply reply;
  if (!reply.ParseFromString(body)) return std::nullopt;
  return reply;
}

}  // namespace tandem::fencing::testing
