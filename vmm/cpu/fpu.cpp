// The F and D arithmetic core (see fpu.h). Built with -ffp-contract=off; no C++ floating-point
// arithmetic is used at all: the host path is inline assembly that makes sure MXCSR holds our
// control bits (see MxcsrScope), runs one SSE instruction and reads the flags back, so neither
// the compiler nor the caller's floating-point environment can change a result.
#include "vmm/cpu/fpu.h"

#include <atomic>

namespace tandem::vmm::fpu {

namespace detail {
std::atomic<Engine> g_engine{Engine::Auto};
extern const bool g_host_fma = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("fma") != 0;
}();
}  // namespace detail

namespace {

using u128 = unsigned __int128;

// ---- format parameters ----
struct F32 {
  static constexpr int kE = 8, kM = 23;
};
struct F64 {
  static constexpr int kE = 11, kM = 52;
};

template <class F>
struct B {
  static constexpr int kBias = (1 << (F::kE - 1)) - 1;
  static constexpr int kExpMax = (1 << F::kE) - 1;
  static constexpr uint64_t kFracMask = (uint64_t{1} << F::kM) - 1;
  static constexpr uint64_t kSign = uint64_t{1} << (F::kE + F::kM);
  static constexpr uint64_t kInf = uint64_t{kExpMax} << F::kM;
  static constexpr uint64_t kQuietBit = uint64_t{1} << (F::kM - 1);
  static constexpr uint64_t kNaN = kInf | kQuietBit;  // canonical
  static bool sign(uint64_t v) { return (v & kSign) != 0; }
  static int exp(uint64_t v) { return static_cast<int>((v >> F::kM) & kExpMax); }
  static uint64_t frac(uint64_t v) { return v & kFracMask; }
  static bool is_nan(uint64_t v) { return exp(v) == kExpMax && frac(v) != 0; }
  static bool is_snan(uint64_t v) { return is_nan(v) && !(v & kQuietBit); }
  static bool is_inf(uint64_t v) { return exp(v) == kExpMax && frac(v) == 0; }
  static bool is_zero(uint64_t v) { return (v & ~kSign) == 0; }
  static uint64_t zero(bool s) { return s ? kSign : 0; }
  static uint64_t inf(bool s) { return kInf | zero(s); }
};

// A finite nonzero value as sig * 2^k (sig an integer).
struct Unpacked {
  bool sign;
  int k;
  uint64_t sig;
};
template <class F>
Unpacked unpack(uint64_t v) {
  using Bf = B<F>;
  const int e = Bf::exp(v);
  Unpacked u{Bf::sign(v), (e ? e : 1) - Bf::kBias - F::kM, Bf::frac(v)};
  if (e) u.sig |= uint64_t{1} << F::kM;
  return u;
}
// Normalises sig so its top bit is bit M (subnormal inputs).
template <class F>
Unpacked unpack_normal(uint64_t v) {
  Unpacked u = unpack<F>(v);
  while (!(u.sig >> F::kM)) {
    u.sig <<= 1;
    --u.k;
  }
  return u;
}

inline int msb128(u128 v) {
  const uint64_t hi = static_cast<uint64_t>(v >> 64);
  if (hi) return 127 - __builtin_clzll(hi);
  return 63 - __builtin_clzll(static_cast<uint64_t>(v));
}
inline uint64_t shift_right_jam64(uint64_t a, unsigned dist) {
  if (dist == 0) return a;
  if (dist < 64) return (a >> dist) | ((a << (64 - dist)) != 0 ? 1 : 0);
  return a != 0 ? 1 : 0;
}
inline u128 shift_right_jam128(u128 a, unsigned dist) {
  if (dist == 0) return a;
  if (dist < 128) return (a >> dist) | ((a << (128 - dist)) != 0 ? 1 : 0);
  return a != 0 ? 1 : 0;
}

// Rounds and packs sign * sig * 2^(exp + 1 - bias - 62), sig normalised (bit 62 set, bit 63
// clear), the low bits below the format's precision being round bits with a sticky bit 0.
// Tininess is detected after rounding (as RISC-V and x86 do).
template <class F>
uint64_t round_pack(bool sign, int exp, uint64_t sig, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  constexpr int kRoundBits = 62 - F::kM;
  constexpr uint64_t kMask = (uint64_t{1} << kRoundBits) - 1;
  constexpr uint64_t kHalf = uint64_t{1} << (kRoundBits - 1);
  uint64_t inc = kHalf;
  if (rm == kRTZ) inc = 0;
  else if (rm == kRDN) inc = sign ? kMask : 0;
  else if (rm == kRUP) inc = sign ? 0 : kMask;
  uint64_t round_bits = sig & kMask;
  if (static_cast<unsigned>(exp) >= static_cast<unsigned>(Bf::kExpMax - 2)) {
    if (exp < 0) {
      const bool tiny = exp < -1 || sig + inc < (uint64_t{1} << 63);
      sig = shift_right_jam64(sig, static_cast<unsigned>(-exp));
      exp = 0;
      round_bits = sig & kMask;
      if (tiny && round_bits) flags |= kUF;
    } else if (exp > Bf::kExpMax - 2 || sig + inc >= (uint64_t{1} << 63)) {
      flags |= kOF | kNX;
      return Bf::zero(sign) | (inc ? Bf::kInf : Bf::kInf - 1);
    }
  }
  sig = (sig + inc) >> kRoundBits;
  if (round_bits) flags |= kNX;
  if (rm == kRNE && round_bits == kHalf) sig &= ~uint64_t{1};
  if (sig == 0) exp = 0;
  return Bf::zero(sign) + (static_cast<uint64_t>(exp) << F::kM) + sig;
}

// Rounds sign * sig * 2^k (any nonzero sig) to the format.
template <class F>
uint64_t round_wide(bool sign, int k, u128 sig, unsigned rm, uint32_t& flags) {
  const int p = msb128(sig);
  uint64_t sig64;
  if (p > 62) sig64 = static_cast<uint64_t>(shift_right_jam128(sig, static_cast<unsigned>(p - 62)));
  else sig64 = static_cast<uint64_t>(sig) << (62 - p);
  return round_pack<F>(sign, k + p + B<F>::kBias - 1, sig64, rm, flags);
}

template <class F>
uint64_t nan_result(bool invalid, uint32_t& flags) {
  if (invalid) flags |= kNV;
  return B<F>::kNaN;
}

// ---- the software path ----
template <class F>
uint64_t soft_add(uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  if (Bf::is_nan(a) || Bf::is_nan(b)) return nan_result<F>(Bf::is_snan(a) || Bf::is_snan(b), flags);
  if (Bf::is_inf(a)) {
    if (Bf::is_inf(b) && Bf::sign(a) != Bf::sign(b)) return nan_result<F>(true, flags);
    return a;
  }
  if (Bf::is_inf(b)) return b;
  if (Bf::is_zero(a) && Bf::is_zero(b)) {
    return Bf::sign(a) == Bf::sign(b) ? a : Bf::zero(rm == kRDN);
  }
  if (Bf::is_zero(a)) return b;
  if (Bf::is_zero(b)) return a;
  Unpacked x = unpack<F>(a), y = unpack<F>(b);
  if (x.k < y.k) std::swap(x, y);
  const int d = x.k - y.k;
  u128 big, small;
  int k;
  if (d <= 64) {
    big = u128{x.sig} << d;
    small = y.sig;
    k = y.k;
  } else {
    big = u128{x.sig} << 64;
    small = shift_right_jam64(y.sig, static_cast<unsigned>(d - 64));
    k = x.k - 64;
  }
  bool sign = x.sign;
  u128 sum;
  if (x.sign == y.sign) {
    sum = big + small;
  } else if (big >= small) {
    sum = big - small;
  } else {
    sum = small - big;
    sign = y.sign;
  }
  if (sum == 0) return Bf::zero(rm == kRDN);
  return round_wide<F>(sign, k, sum, rm, flags);
}

template <class F>
uint64_t soft_mul(uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  if (Bf::is_nan(a) || Bf::is_nan(b)) return nan_result<F>(Bf::is_snan(a) || Bf::is_snan(b), flags);
  const bool sign = Bf::sign(a) != Bf::sign(b);
  if (Bf::is_inf(a) || Bf::is_inf(b)) {
    if (Bf::is_zero(a) || Bf::is_zero(b)) return nan_result<F>(true, flags);
    return Bf::inf(sign);
  }
  if (Bf::is_zero(a) || Bf::is_zero(b)) return Bf::zero(sign);
  const Unpacked x = unpack<F>(a), y = unpack<F>(b);
  return round_wide<F>(sign, x.k + y.k, u128{x.sig} * y.sig, rm, flags);
}

template <class F>
uint64_t soft_div(uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  if (Bf::is_nan(a) || Bf::is_nan(b)) return nan_result<F>(Bf::is_snan(a) || Bf::is_snan(b), flags);
  const bool sign = Bf::sign(a) != Bf::sign(b);
  if (Bf::is_inf(a)) {
    if (Bf::is_inf(b)) return nan_result<F>(true, flags);
    return Bf::inf(sign);
  }
  if (Bf::is_inf(b)) return Bf::zero(sign);
  if (Bf::is_zero(b)) {
    if (Bf::is_zero(a)) return nan_result<F>(true, flags);
    flags |= kDZ;
    return Bf::inf(sign);
  }
  if (Bf::is_zero(a)) return Bf::zero(sign);
  const Unpacked x = unpack_normal<F>(a), y = unpack_normal<F>(b);
  const u128 n = u128{x.sig} << 64;
  u128 q = n / y.sig;
  if (n % y.sig) q |= 1;  // sticky: q has >= 64 bits, far below the rounding position
  return round_wide<F>(sign, x.k - y.k - 64, q, rm, flags);
}

inline u128 isqrt128(u128 x, bool& exact) {
  u128 res = 0;
  u128 bit = u128{1} << 126;
  while (bit > x) bit >>= 2;
  while (bit) {
    if (x >= res + bit) {
      x -= res + bit;
      res = (res >> 1) + bit;
    } else {
      res >>= 1;
    }
    bit >>= 2;
  }
  exact = x == 0;
  return res;
}

template <class F>
uint64_t soft_sqrt(uint64_t a, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  if (Bf::is_nan(a)) return nan_result<F>(Bf::is_snan(a), flags);
  if (Bf::is_zero(a)) return a;
  if (Bf::sign(a)) return nan_result<F>(true, flags);
  if (Bf::is_inf(a)) return a;
  Unpacked x = unpack_normal<F>(a);
  if (x.k & 1) {
    x.sig <<= 1;
    --x.k;
  }
  constexpr int kShift = (124 - F::kM) & ~1;
  bool exact = false;
  u128 r = isqrt128(u128{x.sig} << kShift, exact);
  if (!exact) r |= 1;
  return round_wide<F>(false, (x.k - kShift) / 2, r, rm, flags);
}

template <class F>
uint64_t soft_fma(uint64_t a, uint64_t b, uint64_t c, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  const bool inf_times_zero =
      (Bf::is_inf(a) && Bf::is_zero(b)) || (Bf::is_zero(a) && Bf::is_inf(b));
  if (Bf::is_nan(a) || Bf::is_nan(b) || Bf::is_nan(c)) {
    // RISC-V: inf * 0 + qNaN raises NV too.
    return nan_result<F>(Bf::is_snan(a) || Bf::is_snan(b) || Bf::is_snan(c) || inf_times_zero,
                         flags);
  }
  if (inf_times_zero) return nan_result<F>(true, flags);
  const bool sp = Bf::sign(a) != Bf::sign(b);
  if (Bf::is_inf(a) || Bf::is_inf(b)) {
    if (Bf::is_inf(c) && Bf::sign(c) != sp) return nan_result<F>(true, flags);
    return Bf::inf(sp);
  }
  if (Bf::is_inf(c)) return c;
  if (Bf::is_zero(a) || Bf::is_zero(b)) {
    if (Bf::is_zero(c)) return Bf::sign(c) == sp ? c : Bf::zero(rm == kRDN);
    return c;
  }
  const Unpacked x = unpack<F>(a), y = unpack<F>(b);
  const u128 product = u128{x.sig} * y.sig;
  const int kp = x.k + y.k;
  if (Bf::is_zero(c)) return round_wide<F>(sp, kp, product, rm, flags);
  const Unpacked z = unpack<F>(c);
  // Both terms normalised to bit 125; the one with the smaller exponent is shifted right with
  // a sticky bit (exact whenever cancellation could reach the bits it loses).
  struct Term {
    bool sign;
    int k;
    u128 sig;
  };
  auto normalise = [](bool sign, int k, u128 sig) {
    const int shift = 125 - msb128(sig);
    return Term{sign, k - shift, sig << shift};
  };
  Term p = normalise(sp, kp, product), q = normalise(z.sign, z.k, z.sig);
  if (p.k < q.k) std::swap(p, q);
  q.sig = shift_right_jam128(q.sig, static_cast<unsigned>(p.k - q.k));
  bool sign = p.sign;
  u128 sum;
  if (p.sign == q.sign) {
    sum = p.sig + q.sig;
  } else if (p.sig >= q.sig) {
    sum = p.sig - q.sig;
  } else {
    sum = q.sig - p.sig;
    sign = q.sign;
  }
  if (sum == 0) return Bf::zero(rm == kRDN);
  return round_wide<F>(sign, p.k, sum, rm, flags);
}

template <class F>
uint64_t soft_arith(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  switch (op) {
    case Arith::Add: return soft_add<F>(a, b, rm, flags);
    case Arith::Sub: return soft_add<F>(a, b ^ B<F>::kSign, rm, flags);
    case Arith::Mul: return soft_mul<F>(a, b, rm, flags);
    default: return soft_div<F>(a, b, rm, flags);
  }
}

// ---- the host path (x86-64 SSE) ----
using detail::g_engine;
using detail::g_host_fma;

// MXCSR: all exceptions masked, DAZ/FTZ off, RC from the RISC-V rm (0..3); no flags.
inline uint32_t mxcsr_for(unsigned rm) {
  static constexpr uint32_t kRc[4] = {0, 3, 1, 2};  // RNE, RTZ, RDN, RUP -> x86 RC
  return 0x1f80u | (kRc[rm] << 13);
}
// x86 status flags (IE, ZE, OE, UE, PE; DE ignored) <-> fflags, as tables.
inline constexpr uint32_t kMxcsrControl = 0xffc0u;  // everything but the six flags
inline constexpr uint32_t kMxcsrFlags = 0x3du;      // IE ZE OE UE PE (DE is never used)
constexpr uint32_t rv_from_x86(uint32_t st) {
  return ((st & 0x01) ? kNV : 0) | ((st & 0x04) ? kDZ : 0) | ((st & 0x08) ? kOF : 0) |
         ((st & 0x10) ? kUF : 0) | ((st & 0x20) ? kNX : 0);
}
constexpr uint32_t x86_from_rv(uint32_t f) {
  return ((f & kNV) ? 0x01 : 0) | ((f & kDZ) ? 0x04 : 0) | ((f & kOF) ? 0x08 : 0) |
         ((f & kUF) ? 0x10 : 0) | ((f & kNX) ? 0x20 : 0);
}
template <uint32_t (*Map)(uint32_t), unsigned N>
constexpr auto make_table() {
  struct T { uint8_t v[N]; } t{};
  for (unsigned i = 0; i < N; ++i) t.v[i] = static_cast<uint8_t>(Map(i));
  return t;
}
constexpr auto kRvFromX86 = make_table<rv_from_x86, 64>();
constexpr auto kX86FromRv = make_table<x86_from_rv, 32>();
inline uint32_t flags_from_mxcsr(uint32_t st) { return kRvFromX86.v[st & 0x3f]; }

// Every host operation runs with MXCSR = ours (mxcsr_for(rm)) plus, as flags, at most those
// already in `flags` (the flags the result is ORed into: for the hart, the guest's accrued
// fflags). The flags read back after the instruction are then the instruction's own ORed
// with ones `flags` already holds, so ORing them in is exact, and MXCSR need not be cleared
// before nor restored after each instruction: the common case (the caller's control bits
// are ours, as for a guest in RNE, and no foreign flag is set) is stmxcsr, the instruction,
// stmxcsr, with no ldmxcsr (which dominated the profile). Otherwise ours is loaded; if the
// caller's control bits (rounding, DAZ/FTZ) differed they are restored afterwards, so host
// code never runs with the guest's rounding mode. The caller may be left with extra sticky
// flags, which nothing on the host reads. All volatile asm, so the compiler keeps the order.
struct MxcsrScope {
  uint32_t saved, mx;
  bool restore_after = false;
  MxcsrScope(unsigned rm, uint32_t flags) : mx(mxcsr_for(rm) | kX86FromRv.v[flags & 0x1f]) {
    __asm__ volatile("stmxcsr %0" : "=m"(saved));
    const uint32_t diff = saved ^ mx;
    if ((diff & kMxcsrControl) | (saved & kMxcsrFlags & ~mx)) [[unlikely]] {
      restore_after = (diff & kMxcsrControl) != 0;
      __asm__ volatile("ldmxcsr %0" ::"m"(mx));
    }
  }
  void restore() {
    if (restore_after) [[unlikely]] {
      __asm__ volatile("ldmxcsr %0" ::"m"(saved));
    }
  }
};

#define TANDEM_HOST_BINOP(NAME, INSN, REG)                                                    \
  inline uint64_t NAME(uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {               \
    MxcsrScope scope(rm, flags);                                                             \
    uint32_t st;                                                                             \
    __asm__ volatile(INSN " %[b], %[a]\n\t"                                                  \
                     "stmxcsr %[st]"                                                         \
                     : [a] "+x"(a), [st] "=m"(st)                                            \
                     : [b] "x"(b));                                                          \
    scope.restore();                                                                         \
    flags |= flags_from_mxcsr(st);                                                           \
    return a & REG;                                                                          \
  }
// (a and b live in XMM registers as 64-bit integers; the scalar instructions use the low lane.)
TANDEM_HOST_BINOP(host_add32, "addss", 0xffffffffu)
TANDEM_HOST_BINOP(host_sub32, "subss", 0xffffffffu)
TANDEM_HOST_BINOP(host_mul32, "mulss", 0xffffffffu)
TANDEM_HOST_BINOP(host_div32, "divss", 0xffffffffu)
TANDEM_HOST_BINOP(host_sqrt32, "sqrtss", 0xffffffffu)  // sqrt of b; a's low lane replaced
TANDEM_HOST_BINOP(host_add64, "addsd", ~uint64_t{0})
TANDEM_HOST_BINOP(host_sub64, "subsd", ~uint64_t{0})
TANDEM_HOST_BINOP(host_mul64, "mulsd", ~uint64_t{0})
TANDEM_HOST_BINOP(host_div64, "divsd", ~uint64_t{0})
TANDEM_HOST_BINOP(host_sqrt64, "sqrtsd", ~uint64_t{0})
#undef TANDEM_HOST_BINOP

// c = a * b + c (vfmadd231: dest += src1 * src2).
#define TANDEM_HOST_FMA(NAME, INSN, REG)                                                      \
  inline uint64_t NAME(uint64_t a, uint64_t b, uint64_t c, unsigned rm, uint32_t& flags) {   \
    MxcsrScope scope(rm, flags);                                                             \
    uint32_t st;                                                                             \
    __asm__ volatile(INSN " %[b], %[a], %[c]\n\t"                                           \
                     "stmxcsr %[st]"                                                         \
                     : [c] "+x"(c), [st] "=m"(st)                                            \
                     : [a] "x"(a), [b] "x"(b));                                              \
    scope.restore();                                                                         \
    flags |= flags_from_mxcsr(st);                                                           \
    return c & REG;                                                                          \
  }
TANDEM_HOST_FMA(host_fma32, "vfmadd231ss", 0xffffffffu)
TANDEM_HOST_FMA(host_fma64, "vfmadd231sd", ~uint64_t{0})
#undef TANDEM_HOST_FMA

inline bool use_host(unsigned rm) {
  return rm < kRMM && g_engine.load(std::memory_order_relaxed) == Engine::Auto;
}

// A host result: NaN results become the canonical NaN (x86 propagates payloads); the flags
// are the host's (IE is raised exactly for sNaN operands and invalid operations, as NV).
template <class F>
inline uint64_t host_fixup(uint64_t r) {
  if (B<F>::is_nan(r)) [[unlikely]] return B<F>::kNaN;
  return r;
}

template <class F>
uint64_t host_arith(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  uint64_t r;
  if constexpr (F::kM == 23) {
    switch (op) {
      case Arith::Add: r = host_add32(a, b, rm, flags); break;
      case Arith::Sub: r = host_sub32(a, b, rm, flags); break;
      case Arith::Mul: r = host_mul32(a, b, rm, flags); break;
      default: r = host_div32(a, b, rm, flags); break;
    }
  } else {
    switch (op) {
      case Arith::Add: r = host_add64(a, b, rm, flags); break;
      case Arith::Sub: r = host_sub64(a, b, rm, flags); break;
      case Arith::Mul: r = host_mul64(a, b, rm, flags); break;
      default: r = host_div64(a, b, rm, flags); break;
    }
  }
  return host_fixup<F>(r);
}

template <class F>
uint64_t fma_any(uint64_t a, uint64_t b, uint64_t c, bool negate_product, bool negate_addend,
                 unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  if (negate_product) a ^= Bf::kSign;
  if (negate_addend) c ^= Bf::kSign;
  if (use_host(rm) && g_host_fma) {
    const uint64_t r =
        F::kM == 23 ? host_fma32(a, b, c, rm, flags) : host_fma64(a, b, c, rm, flags);
    if (Bf::is_nan(r)) [[unlikely]] {
      const bool inf_times_zero =
          (Bf::is_inf(a) && Bf::is_zero(b)) || (Bf::is_zero(a) && Bf::is_inf(b));
      if (inf_times_zero) flags |= kNV;
    }
    return host_fixup<F>(r);
  }
  return soft_fma<F>(a, b, c, rm, flags);
}

// ---- min/max, compare, classify, conversions (integer code for all engines) ----
template <class F>
uint64_t minmax_any(uint64_t a, uint64_t b, bool max, uint32_t& flags) {
  using Bf = B<F>;
  if (Bf::is_snan(a) || Bf::is_snan(b)) flags |= kNV;
  const bool na = Bf::is_nan(a), nb = Bf::is_nan(b);
  if (na && nb) return Bf::kNaN;
  if (na) return b;
  if (nb) return a;
  // Order as signed-magnitude integers (-0 < +0).
  auto key = [](uint64_t v) -> int64_t {
    const int64_t mag = static_cast<int64_t>(v & ~Bf::kSign);
    return Bf::sign(v) ? -mag - 1 : mag;
  };
  const bool a_less = key(a) < key(b);
  return (a_less != max) ? a : b;
}

template <class F>
uint64_t compare_any(uint64_t a, uint64_t b, unsigned kind, uint32_t& flags) {
  using Bf = B<F>;
  if (Bf::is_nan(a) || Bf::is_nan(b)) {
    if (kind != 0 || Bf::is_snan(a) || Bf::is_snan(b)) flags |= kNV;
    return 0;
  }
  const bool both_zero = Bf::is_zero(a) && Bf::is_zero(b);
  const bool eq = a == b || both_zero;
  if (kind == 0) return eq;
  bool lt;
  if (both_zero) lt = false;
  else if (Bf::sign(a) != Bf::sign(b)) lt = Bf::sign(a);
  else lt = Bf::sign(a) ? (a & ~Bf::kSign) > (b & ~Bf::kSign) : a < b;
  return kind == 1 ? lt : (lt || eq);
}

template <class F>
uint64_t classify_any(uint64_t a) {
  using Bf = B<F>;
  const bool s = Bf::sign(a);
  if (Bf::is_inf(a)) return s ? 1u << 0 : 1u << 7;
  if (Bf::is_nan(a)) return Bf::is_snan(a) ? 1u << 8 : 1u << 9;
  if (Bf::is_zero(a)) return s ? 1u << 3 : 1u << 4;
  if (Bf::exp(a) == 0) return s ? 1u << 2 : 1u << 5;
  return s ? 1u << 1 : 1u << 6;
}

template <class F>
uint64_t to_int_any(uint64_t a, unsigned width, bool is_signed, unsigned rm, uint32_t& flags) {
  using Bf = B<F>;
  const uint64_t umax = width == 64 ? ~uint64_t{0} : 0xffffffffu;
  const uint64_t smax = umax >> 1;
  const uint64_t smin_mag = smax + 1;
  auto finish = [&](uint64_t v) -> uint64_t {
    if (width == 32) return static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(v)));
    return v;
  };
  auto saturate = [&](bool negative) -> uint64_t {
    flags |= kNV;
    if (is_signed) return finish(negative ? (0 - smin_mag) : smax);
    return finish(negative ? 0 : umax);
  };
  if (Bf::is_nan(a)) return saturate(false);
  const bool sign = Bf::sign(a);
  if (Bf::is_inf(a)) return saturate(sign);
  if (Bf::is_zero(a)) return 0;
  const Unpacked u = unpack<F>(a);
  // Magnitude rounded to an integer (saturated far past 2^64).
  u128 mag;
  bool inexact = false;
  if (u.k >= 0) {
    mag = u.k > 70 ? (u128{1} << 100) : (u128{u.sig} << u.k);
  } else {
    const unsigned sh = static_cast<unsigned>(-u.k);
    uint64_t ip, rem_cmp;  // rem_cmp: 0 below half, 1 exactly half, 2 above half
    if (sh >= 64) {
      ip = 0;
      // sig < 2^54, so the value is below 2^-10: below half.
      rem_cmp = 0;
    } else {
      ip = u.sig >> sh;
      const uint64_t rem = u.sig & ((uint64_t{1} << sh) - 1);
      const uint64_t half = uint64_t{1} << (sh - 1);
      rem_cmp = rem < half ? 0 : rem == half ? 1 : 2;
    }
    inexact = sh >= 64 || (u.sig & ((uint64_t{1} << sh) - 1)) != 0;
    bool up = false;
    if (inexact) {
      switch (rm) {
        case kRNE: up = rem_cmp == 2 || (rem_cmp == 1 && (ip & 1)); break;
        case kRTZ: up = false; break;
        case kRDN: up = sign; break;
        case kRUP: up = !sign; break;
        default: up = rem_cmp >= 1; break;
      }
    }
    mag = u128{ip} + (up ? 1 : 0);
  }
  if (is_signed) {
    if (sign ? mag > smin_mag : mag > smax) return saturate(sign);
  } else {
    if (sign && mag != 0) return saturate(true);
    if (!sign && mag > umax) return saturate(false);
  }
  if (inexact) flags |= kNX;
  const uint64_t m = static_cast<uint64_t>(mag);
  return finish(sign ? 0 - m : m);
}

template <class F>
uint64_t from_int_any(uint64_t value, unsigned width, bool is_signed, unsigned rm,
                      uint32_t& flags) {
  if (width == 32) {
    value = is_signed ? static_cast<uint64_t>(static_cast<int64_t>(static_cast<int32_t>(value)))
                      : (value & 0xffffffffu);
  }
  if (value == 0) return 0;
  const bool sign = is_signed && static_cast<int64_t>(value) < 0;
  const uint64_t mag = sign ? 0 - value : value;
  return round_wide<F>(sign, 0, mag, rm, flags);
}

template <class F>
uint64_t sqrt_any(uint64_t a, unsigned rm, uint32_t& flags) {
  if (use_host(rm)) {
    const uint64_t r = F::kM == 23 ? host_sqrt32(0, a, rm, flags) : host_sqrt64(0, a, rm, flags);
    return host_fixup<F>(r);
  }
  return soft_sqrt<F>(a, rm, flags);
}

}  // namespace

void set_engine(Engine e) { g_engine.store(e, std::memory_order_relaxed); }

uint64_t arith32(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  if (use_host(rm)) return host_arith<F32>(op, a, b, rm, flags);
  return soft_arith<F32>(op, a, b, rm, flags);
}
uint64_t arith64(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  if (use_host(rm)) return host_arith<F64>(op, a, b, rm, flags);
  return soft_arith<F64>(op, a, b, rm, flags);
}
uint64_t sqrt32(uint64_t a, unsigned rm, uint32_t& flags) { return sqrt_any<F32>(a, rm, flags); }
uint64_t sqrt64(uint64_t a, unsigned rm, uint32_t& flags) { return sqrt_any<F64>(a, rm, flags); }
uint64_t fma32(uint64_t a, uint64_t b, uint64_t c, bool np, bool na, unsigned rm,
               uint32_t& flags) {
  return fma_any<F32>(a, b, c, np, na, rm, flags);
}
uint64_t fma64(uint64_t a, uint64_t b, uint64_t c, bool np, bool na, unsigned rm,
               uint32_t& flags) {
  return fma_any<F64>(a, b, c, np, na, rm, flags);
}

namespace soft {
uint64_t arith32(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  return soft_arith<F32>(op, a, b, rm, flags);
}
uint64_t arith64(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags) {
  return soft_arith<F64>(op, a, b, rm, flags);
}
uint64_t sqrt32(uint64_t a, unsigned rm, uint32_t& flags) { return soft_sqrt<F32>(a, rm, flags); }
uint64_t sqrt64(uint64_t a, unsigned rm, uint32_t& flags) { return soft_sqrt<F64>(a, rm, flags); }
uint64_t fma32(uint64_t a, uint64_t b, uint64_t c, unsigned rm, uint32_t& flags) {
  return soft_fma<F32>(a, b, c, rm, flags);
}
uint64_t fma64(uint64_t a, uint64_t b, uint64_t c, unsigned rm, uint32_t& flags) {
  return soft_fma<F64>(a, b, c, rm, flags);
}
}  // namespace soft

uint64_t minmax32(uint64_t a, uint64_t b, bool max, uint32_t& flags) {
  return minmax_any<F32>(a, b, max, flags);
}
uint64_t minmax64(uint64_t a, uint64_t b, bool max, uint32_t& flags) {
  return minmax_any<F64>(a, b, max, flags);
}
uint64_t compare32(uint64_t a, uint64_t b, unsigned kind, uint32_t& flags) {
  return compare_any<F32>(a, b, kind, flags);
}
uint64_t compare64(uint64_t a, uint64_t b, unsigned kind, uint32_t& flags) {
  return compare_any<F64>(a, b, kind, flags);
}
uint64_t classify32(uint64_t a) { return classify_any<F32>(a); }
uint64_t classify64(uint64_t a) { return classify_any<F64>(a); }
uint64_t to_int32(uint64_t a, unsigned width, bool is_signed, unsigned rm, uint32_t& flags) {
  return to_int_any<F32>(a, width, is_signed, rm, flags);
}
uint64_t to_int64(uint64_t a, unsigned width, bool is_signed, unsigned rm, uint32_t& flags) {
  return to_int_any<F64>(a, width, is_signed, rm, flags);
}
uint64_t from_int32(uint64_t value, unsigned width, bool is_signed, unsigned rm,
                    uint32_t& flags) {
  return from_int_any<F32>(value, width, is_signed, rm, flags);
}
uint64_t from_int64(uint64_t value, unsigned width, bool is_signed, unsigned rm,
                    uint32_t& flags) {
  return from_int_any<F64>(value, width, is_signed, rm, flags);
}
uint64_t f64_to_f32(uint64_t a, unsigned rm, uint32_t& flags) {
  using Bd = B<F64>;
  using Bs = B<F32>;
  if (Bd::is_nan(a)) return nan_result<F32>(Bd::is_snan(a), flags);
  if (Bd::is_inf(a)) return Bs::inf(Bd::sign(a));
  if (Bd::is_zero(a)) return Bs::zero(Bd::sign(a));
  const Unpacked u = unpack<F64>(a);
  return round_wide<F32>(u.sign, u.k, u.sig, rm, flags);
}
uint64_t f32_to_f64(uint64_t a, uint32_t& flags) {
  using Bd = B<F64>;
  using Bs = B<F32>;
  if (Bs::is_nan(a)) return nan_result<F64>(Bs::is_snan(a), flags);
  if (Bs::is_inf(a)) return Bd::inf(Bs::sign(a));
  if (Bs::is_zero(a)) return Bd::zero(Bs::sign(a));
  const Unpacked u = unpack<F32>(a);
  return round_wide<F64>(u.sign, u.k, u.sig, kRNE, flags);  // exact
}

}  // namespace tandem::vmm::fpu
