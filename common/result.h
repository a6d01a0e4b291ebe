#pragma once
// Errors as values: a kind a caller can match on and a message built once, at the edge
// (GCC 12's C++20 has no std::expected). Header-only; any library may include it.
//
//   Result<void> protect(...);        if (auto r = node.protect(p); !r) log(r.error().message);
//   Result<Chunk> parse(...);         return Error{ErrorKind::Invalid, "part 3 is empty"};
#include <string>
#include <utility>
#include <variant>

namespace tandem {

enum class ErrorKind {
  Invalid,      // the input or request is malformed (a bad address, an out-of-order part)
  WrongState,   // not now: the node's role or state does not allow it
  Refused,      // the peer or the arbiter said no
  Unavailable,  // something needed is not there (no lease yet, the link is down)
  Failed,       // it was tried and did not work (I/O, a hash mismatch)
};

inline constexpr const char* to_string(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Invalid:
      return "invalid";
    case ErrorKind::WrongState:
      return "wrong state";
    case ErrorKind::Refused:
      return "refused";
    case ErrorKind::Unavailable:
      return "unavailable";
    case ErrorKind::Failed:
      return "failed";
  }
  return "error";
}

struct Error {
  ErrorKind kind = ErrorKind::Failed;
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit, like std::expected
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

inline Error make_error(ErrorKind kind, std::string message) { return Error{kind, std::move(message)}; }

}  // namespace tandem
