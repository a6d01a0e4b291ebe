#pragma once
// RV64 integer helpers shared by the interpreter (execute.cpp) and the translator (jit.cpp):
// RISC-V division is total (x / 0 and INT_MIN / -1 have defined results, no trap), so both
// engines compute it through these functions and can never disagree.
#include <cstdint>

namespace tandem::vmm::alu {

inline uint64_t sext32(uint64_t v) {
  return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v)));
}
inline int64_t as_signed(uint64_t v) { return static_cast<int64_t>(v); }

inline uint64_t div_signed(uint64_t a, uint64_t b) {
  if (b == 0) return ~uint64_t{0};
  if (as_signed(a) == INT64_MIN && as_signed(b) == -1) return a;
  return static_cast<uint64_t>(as_signed(a) / as_signed(b));
}
inline uint64_t rem_signed(uint64_t a, uint64_t b) {
  if (b == 0) return a;
  if (as_signed(a) == INT64_MIN && as_signed(b) == -1) return 0;
  return static_cast<uint64_t>(as_signed(a) % as_signed(b));
}
inline uint64_t divw(uint64_t a, uint64_t b) {
  const int32_t x = static_cast<int32_t>(a), y = static_cast<int32_t>(b);
  if (y == 0) return ~uint64_t{0};
  if (x == INT32_MIN && y == -1) return sext32(static_cast<uint32_t>(x));
  return sext32(static_cast<uint32_t>(x / y));
}
inline uint64_t remw(uint64_t a, uint64_t b) {
  const int32_t x = static_cast<int32_t>(a), y = static_cast<int32_t>(b);
  if (y == 0) return sext32(static_cast<uint32_t>(x));
  if (x == INT32_MIN && y == -1) return 0;
  return sext32(static_cast<uint32_t>(x % y));
}
inline uint64_t divuw(uint64_t a, uint64_t b) {
  const uint32_t x = static_cast<uint32_t>(a), y = static_cast<uint32_t>(b);
  if (y == 0) return ~uint64_t{0};
  return sext32(x / y);
}
inline uint64_t remuw(uint64_t a, uint64_t b) {
  const uint32_t x = static_cast<uint32_t>(a), y = static_cast<uint32_t>(b);
  if (y == 0) return sext32(x);
  return sext32(x % y);
}
inline uint64_t mulh(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<__int128>(as_signed(a)) * as_signed(b)) >> 64);
}
inline uint64_t mulhu(uint64_t a, uint64_t b) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline uint64_t mulhsu(uint64_t a, uint64_t b) {
  const __int128 product = static_cast<__int128>(as_signed(a)) * static_cast<__int128>(b);
  return static_cast<uint64_t>(product >> 64);
}

}  // namespace tandem::vmm::alu
