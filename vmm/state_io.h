#pragma once
// Snapshot streams. Every part of the machine saves a plain state struct through a
// StateWriter and loads it back through a StateReader; the machine's save is the sum of
// its parts. The same writer feeds the state hash (XXH3), so "hash" always means
// "hash of exactly what save() writes".
#include <cstdint>
#include <cstring>
#include <span>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace tandem::vmm {

// Thrown by StateReader on truncated or inconsistent input: a corrupt snapshot is refused,
// never half-applied silently.
class StateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class StateSink {
 public:
  virtual ~StateSink() = default;
  virtual void write(const void* data, size_t len) = 0;
};

class StateSource {
 public:
  virtual ~StateSource() = default;
  // Reads exactly len bytes or throws StateError.
  virtual void read(void* data, size_t len) = 0;
};

class StateWriter {
 public:
  explicit StateWriter(StateSink& sink) : sink_(sink) {}
  void bytes(const void* data, size_t len) { sink_.write(data, len); }
  template <typename T>
  void pod(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    sink_.write(&value, sizeof(T));
  }
  void u64(uint64_t v) { pod(v); }
  // A 4-byte section tag, so a reader that is out of step fails loudly at the right place.
  void tag(const char (&t)[5]) { sink_.write(t, 4); }

 private:
  StateSink& sink_;
};

class StateReader {
 public:
  explicit StateReader(StateSource& source) : source_(source) {}
  void bytes(void* data, size_t len) { source_.read(data, len); }
  template <typename T>
  void pod(T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    source_.read(&value, sizeof(T));
  }
  uint64_t u64() {
    uint64_t v;
    pod(v);
    return v;
  }
  void expect_tag(const char (&t)[5]) {
    char got[4];
    source_.read(got, 4);
    if (std::memcmp(got, t, 4) != 0) {
      throw StateError(std::string("snapshot: expected section '") + t + "', found '" +
                       std::string(got, 4) + "'");
    }
  }

 private:
  StateSource& source_;
};

}  // namespace tandem::vmm
