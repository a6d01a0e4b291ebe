#pragma once
// The F and D arithmetic core: IEEE 754-2008 binary32/binary64 exactly as the RISC-V
// unprivileged spec (chapter "F", 2.2 min/max) defines the results, bit for bit and flag for
// flag, independent of the host's floating-point environment.
//
// Two implementations of the rounded operations (add, sub, mul, div, sqrt, fused multiply-add):
// - the host's SSE/FMA3 unit, with MXCSR holding the rounding mode for the one instruction
//   and the flags read back (the fast path for RNE, RTZ, RDN, RUP); the caller's rounding
//   mode and DAZ/FTZ are never changed, its sticky flags may be;
// - an exact software path (integer arithmetic only), used for RMM (which SSE lacks), for the
//   fused multiply-add when the host has no FMA3, and as the reference the tests compare the
//   host path with.
// Both give identical bits and flags: x86 SSE detects tininess after rounding, as RISC-V does;
// the differences (NaN results are the canonical NaN; fma(inf, 0, qNaN) raises NV) are fixed
// up after the host instruction. Everything else (conversions, min/max, compares, classify,
// sign injection) is integer code.
//
// Values are raw bits: binary32 in the low 32 bits of a uint64_t (no NaN-boxing here).
#include <atomic>
#include <cstdint>

namespace tandem::vmm::fpu {

// fflags bits.
inline constexpr uint32_t kNX = 1, kUF = 2, kOF = 4, kDZ = 8, kNV = 16;
// Rounding modes (the rm / frm encodings).
inline constexpr unsigned kRNE = 0, kRTZ = 1, kRDN = 2, kRUP = 3, kRMM = 4;

inline constexpr uint64_t kCanonicalNaN32 = 0x7fc00000;
inline constexpr uint64_t kCanonicalNaN64 = 0x7ff8000000000000;

enum class Arith : uint8_t { Add, Sub, Mul, Div };

// Which implementation computes the rounded operations.
enum class Engine : uint8_t {
  Auto,      // host SSE for RNE/RTZ/RDN/RUP, FMA3 if the host has it; software otherwise
  Software,  // the software path for everything (the reference)
};
void set_engine(Engine engine);  // process-wide; for tests and benchmarks
namespace detail {
extern std::atomic<Engine> g_engine;
extern const bool g_host_fma;
}  // namespace detail
inline Engine engine() { return detail::g_engine.load(std::memory_order_relaxed); }
inline bool host_has_fma() { return detail::g_host_fma; }

// Rounded operations. `rm` is 0..4; flags are ORed into `flags`. Passing the flags accrued so
// far (the hart passes fflags) is fastest: the host path then needs no MXCSR load.
uint64_t arith32(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags);
uint64_t arith64(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags);
uint64_t sqrt32(uint64_t a, unsigned rm, uint32_t& flags);
uint64_t sqrt64(uint64_t a, unsigned rm, uint32_t& flags);
// a*b + c with negate_product/negate_addend giving FMSUB, FNMSUB, FNMADD.
uint64_t fma32(uint64_t a, uint64_t b, uint64_t c, bool negate_product, bool negate_addend,
               unsigned rm, uint32_t& flags);
uint64_t fma64(uint64_t a, uint64_t b, uint64_t c, bool negate_product, bool negate_addend,
               unsigned rm, uint32_t& flags);

// The software path, directly (tests compare it with the host path).
namespace soft {
uint64_t arith32(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags);
uint64_t arith64(Arith op, uint64_t a, uint64_t b, unsigned rm, uint32_t& flags);
uint64_t sqrt32(uint64_t a, unsigned rm, uint32_t& flags);
uint64_t sqrt64(uint64_t a, unsigned rm, uint32_t& flags);
uint64_t fma32(uint64_t a, uint64_t b, uint64_t c, unsigned rm, uint32_t& flags);
uint64_t fma64(uint64_t a, uint64_t b, uint64_t c, unsigned rm, uint32_t& flags);
}  // namespace soft

// Min/max (2.2: a single NaN operand yields the other operand; -0 < +0).
uint64_t minmax32(uint64_t a, uint64_t b, bool max, uint32_t& flags);
uint64_t minmax64(uint64_t a, uint64_t b, bool max, uint32_t& flags);
// Compares: 0 = eq (quiet), 1 = lt, 2 = le (signalling).
uint64_t compare32(uint64_t a, uint64_t b, unsigned kind, uint32_t& flags);
uint64_t compare64(uint64_t a, uint64_t b, unsigned kind, uint32_t& flags);
uint64_t classify32(uint64_t a);
uint64_t classify64(uint64_t a);

// Float -> integer: `width` 32 or 64, `is_signed`; the result as RISC-V writes it to rd (32-bit
// results sign-extended, also the unsigned ones). Saturates with NV on NaN/out of range.
uint64_t to_int32(uint64_t a, unsigned width, bool is_signed, unsigned rm, uint32_t& flags);
uint64_t to_int64(uint64_t a, unsigned width, bool is_signed, unsigned rm, uint32_t& flags);
// Integer -> float: `value` is rs1; width 32 takes its low 32 bits.
uint64_t from_int32(uint64_t value, unsigned width, bool is_signed, unsigned rm, uint32_t& flags);
uint64_t from_int64(uint64_t value, unsigned width, bool is_signed, unsigned rm, uint32_t& flags);
uint64_t f64_to_f32(uint64_t a, unsigned rm, uint32_t& flags);
uint64_t f32_to_f64(uint64_t a, uint32_t& flags);


// ---- the hart's live host path ----
// For a run of guest FP instructions the hart keeps MXCSR loaded with mxcsr_for(rm) and lets
// the flags accrue there (sticky, as fflags are), folding them into fcsr only when fflags
// are read or written, when the rounding mode changes, before any device access and when
// the run slice ends (Hart::Impl::fp_leave); each instruction is then the one SSE/FMA3
// instruction and a NaN check, with no MXCSR access at all. These functions assume MXCSR
// is so loaded; they are exact for rm 0..3 (RMM and hosts without FMA3 use the functions
// above). The asm is volatile so the compiler keeps it between the MXCSR loads and stores.
namespace live {
inline constexpr uint32_t mxcsr_for(unsigned rm) {  // exceptions masked, DAZ/FTZ off, no flags
  return 0x1f80u | ((rm == 0 ? 0u : rm == 1 ? 3u : rm == 2 ? 1u : 2u) << 13);
}
// x86 status flags (IE, ZE, OE, UE, PE; DE ignored) -> fflags.
inline uint32_t fflags_from_mxcsr(uint32_t st) {
  return ((st & 0x01) ? kNV : 0) | ((st & 0x04) ? kDZ : 0) | ((st & 0x08) ? kOF : 0) |
         ((st & 0x10) ? kUF : 0) | ((st & 0x20) ? kNX : 0);
}
inline uint32_t read_mxcsr() {
  uint32_t v;
  __asm__ volatile("stmxcsr %0" : "=m"(v));
  return v;
}
inline void write_mxcsr(uint32_t v) { __asm__ volatile("ldmxcsr %0" ::"m"(v)); }

inline uint64_t canon32(uint64_t r) {
  r &= 0xffffffffu;
  return ((r & 0x7f800000u) == 0x7f800000u && (r & 0x7fffffu)) ? kCanonicalNaN32 : r;
}
inline uint64_t canon64(uint64_t r) {
  return ((r & 0x7ff0000000000000u) == 0x7ff0000000000000u && (r & 0xfffffffffffffu))
             ? kCanonicalNaN64 : r;
}
#define TANDEM_LIVE_BINOP(NAME, INSN, CANON)                                                  \
  inline uint64_t NAME(uint64_t a, uint64_t b) {                                             \
    __asm__ volatile(INSN " %[b], %[a]" : [a] "+x"(a) : [b] "x"(b));                         \
    return CANON(a);                                                                         \
  }
TANDEM_LIVE_BINOP(add32, "addss", canon32)
TANDEM_LIVE_BINOP(sub32, "subss", canon32)
TANDEM_LIVE_BINOP(mul32, "mulss", canon32)
TANDEM_LIVE_BINOP(div32, "divss", canon32)
TANDEM_LIVE_BINOP(sqrt32, "sqrtss", canon32)  // sqrt of b (a's low lane is replaced)
TANDEM_LIVE_BINOP(add64, "addsd", canon64)
TANDEM_LIVE_BINOP(sub64, "subsd", canon64)
TANDEM_LIVE_BINOP(mul64, "mulsd", canon64)
TANDEM_LIVE_BINOP(div64, "divsd", canon64)
TANDEM_LIVE_BINOP(sqrt64, "sqrtsd", canon64)
#undef TANDEM_LIVE_BINOP
inline uint64_t arith32(Arith op, uint64_t a, uint64_t b) {
  switch (op) {
    case Arith::Add: return add32(a, b);
    case Arith::Sub: return sub32(a, b);
    case Arith::Mul: return mul32(a, b);
    default: return div32(a, b);
  }
}
inline uint64_t arith64(Arith op, uint64_t a, uint64_t b) {
  switch (op) {
    case Arith::Add: return add64(a, b);
    case Arith::Sub: return sub64(a, b);
    case Arith::Mul: return mul64(a, b);
    default: return div64(a, b);
  }
}
// a*b + c (the caller negates operands for FMSUB/FNMSUB/FNMADD); x86 gives no NV for
// inf*0 + qNaN, RISC-V does: `flags` gets it.
inline uint64_t fma32(uint64_t a, uint64_t b, uint64_t c, uint32_t& flags) {
  __asm__ volatile("vfmadd231ss %[b], %[a], %[c]" : [c] "+x"(c) : [a] "x"(a), [b] "x"(b));
  c &= 0xffffffffu;
  if ((c & 0x7f800000u) == 0x7f800000u && (c & 0x7fffffu)) [[unlikely]] {
    const uint64_t ma = a & 0x7fffffffu, mb = b & 0x7fffffffu;
    if ((ma == 0x7f800000u && mb == 0) || (ma == 0 && mb == 0x7f800000u)) flags |= kNV;
    return kCanonicalNaN32;
  }
  return c;
}
inline uint64_t fma64(uint64_t a, uint64_t b, uint64_t c, uint32_t& flags) {
  __asm__ volatile("vfmadd231sd %[b], %[a], %[c]" : [c] "+x"(c) : [a] "x"(a), [b] "x"(b));
  if ((c & 0x7ff0000000000000u) == 0x7ff0000000000000u && (c & 0xfffffffffffffu)) [[unlikely]] {
    constexpr uint64_t kInf = 0x7ff0000000000000u, kMag = ~(uint64_t{1} << 63);
    const uint64_t ma = a & kMag, mb = b & kMag;
    if ((ma == kInf && mb == 0) || (ma == 0 && mb == kInf)) flags |= kNV;
    return kCanonicalNaN64;
  }
  return c;
}
}  // namespace live

}  // namespace tandem::vmm::fpu
