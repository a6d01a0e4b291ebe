// KvConnection: one TCP connection to a kv guest's console, line in, line out, with
// deadlines on everything (a frozen primary still accepts connections in its kernel
// backlog but never answers, so nothing may block without a bound).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "net/endpoint.h"

namespace tandem::drills {

using net::Endpoint;
// "HOST:PORT" or "[v6]:PORT" with a numeric host; throws std::invalid_argument.
inline Endpoint parse_endpoint_text(const std::string& text) { return net::parse_endpoint(text); }

class KvConnection {
 public:
  KvConnection() = default;
  ~KvConnection();
  KvConnection(KvConnection&& other) noexcept;
  KvConnection& operator=(KvConnection&& other) noexcept;
  KvConnection(const KvConnection&) = delete;
  KvConnection& operator=(const KvConnection&) = delete;

  // Connects within `timeout`; false when refused, unreachable or late.
  bool connect(const Endpoint& endpoint, std::chrono::milliseconds timeout);
  bool is_open() const { return fd_ >= 0; }
  void close();

  // Sends one line (the newline is added); false if the connection broke.
  bool send_line(const std::string& line);
  // The next complete line (without "\n" or "\r\n") within `timeout`, or std::nullopt on
  // timeout; closes the connection and returns std::nullopt on EOF or error
  // (is_open() tells them apart).
  std::optional<std::string> read_line(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace tandem::drills
