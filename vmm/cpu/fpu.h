#pragma once
// The F and D arithmetic core: IEEE 754-2008 binary32/binary64 exactly as the RISC-V
// unprivileged spec (chapter "F", 2.2 min/max) defines the results, bit for bit and flag for
// flag, independent of the host's floating-point environment.
//
// Two implementations of the rounded operations (add, sub, mul, div, sqrt, fused multiply-add):
// - the host's SSE/FMA3 unit, with MXCSR set to the rounding mode for the one instruction
//   and restored after it, and the flags read back (the fast path for RNE, RTZ, RDN, RUP);
// - an exact software path (integer arithmetic only), used for RMM (which SSE lacks), for the
//   fused multiply-add when the host has no FMA3, and as the reference the tests compare the
//   host path with.
// Both give identical bits and flags: x86 SSE detects tininess after rounding, as RISC-V does;
// the differences (NaN results are the canonical NaN; fma(inf, 0, qNaN) raises NV) are fixed
// up after the host instruction. Everything else (conversions, min/max, compares, classify,
// sign injection) is integer code.
//
// Values are raw bits: binary32 in the low 32 bits of a uint64_t (no NaN-boxing here).
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
Engine engine();
bool host_has_fma();

// Rounded operations. `rm` is 0..4; flags are ORed into `flags`.
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

}  // namespace tandem::vmm::fpu
