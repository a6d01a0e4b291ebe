// F and D: the arithmetic core (hand-picked cases with their expected bits and flags, per
// instruction family and rounding mode; the host SSE/FMA3 path against the software path on
// a million edge-biased operands) and the hart side (mstatus.FS, NaN-boxing, rounding-mode
// selection, fcsr, loads/stores incl. the compressed forms, the fused multiply-adds' rs3).
#include <random>

#include "tests/vmm/cpu_test_support.h"
#include "tests/vmm/device_test_support.h"
#include "vmm/cpu/fpu.h"

namespace tandem::vmm::test {
namespace {

using namespace fpu;

// ---- the arithmetic core ----
struct R {
  uint64_t bits;
  uint32_t flags;
  bool operator==(const R&) const = default;
};
std::ostream& operator<<(std::ostream& os, const R& r) {
  return os << std::hex << "{0x" << r.bits << ", flags 0x" << r.flags << "}" << std::dec;
}

R add64(uint64_t a, uint64_t b, unsigned rm) {
  uint32_t f = 0;
  const uint64_t r = arith64(Arith::Add, a, b, rm, f);
  return {r, f};
}
R op64(Arith op, uint64_t a, uint64_t b, unsigned rm) {
  uint32_t f = 0;
  const uint64_t r = arith64(op, a, b, rm, f);
  return {r, f};
}
R op32(Arith op, uint64_t a, uint64_t b, unsigned rm) {
  uint32_t f = 0;
  const uint64_t r = arith32(op, a, b, rm, f);
  return {r, f};
}

constexpr uint64_t kOne = 0x3ff0000000000000, kTwo = 0x4000000000000000,
                   kThree = 0x4008000000000000, kMaxD = 0x7fefffffffffffff,
                   kMinNormD = 0x0010000000000000, kInfD = 0x7ff0000000000000,
                   kSignD = 0x8000000000000000, kSNaND = 0x7ff0000000000001,
                   kQNaNPayloadD = 0x7ff8000000000123, kTwoM53 = 0x3ca0000000000000;
constexpr uint64_t kOneF = 0x3f800000, kInfF = 0x7f800000, kSNaNF = 0x7f800001,
                   kMaxF = 0x7f7fffff;

// Both engines must give the expected answer: the host path for RNE..RUP, and the software
// path always (RMM is software in both).
class FpuCoreTest : public ::testing::TestWithParam<Engine> {
 protected:
  void SetUp() override { set_engine(GetParam()); }
  void TearDown() override { set_engine(Engine::Auto); }
};

TEST_P(FpuCoreTest, AddRoundsInEveryMode) {
  // 0.1 + 0.2 = 0.3000000000000000166...: between ...333 and ...334, nearer ...334.
  const uint64_t a = 0x3fb999999999999a, b = 0x3fc999999999999a;
  EXPECT_EQ(add64(a, b, kRNE), (R{0x3fd3333333333334, kNX}));
  EXPECT_EQ(add64(a, b, kRTZ), (R{0x3fd3333333333333, kNX}));
  EXPECT_EQ(add64(a, b, kRDN), (R{0x3fd3333333333333, kNX}));
  EXPECT_EQ(add64(a, b, kRUP), (R{0x3fd3333333333334, kNX}));
  EXPECT_EQ(add64(a, b, kRMM), (R{0x3fd3333333333334, kNX}));
  // 1 + 2^-53 is a tie: RNE to even (1.0), RMM away from zero.
  EXPECT_EQ(add64(kOne, kTwoM53, kRNE), (R{kOne, kNX}));
  EXPECT_EQ(add64(kOne, kTwoM53, kRMM), (R{kOne + 1, kNX}));
  EXPECT_EQ(add64(kOne, kTwoM53, kRUP), (R{kOne + 1, kNX}));
  EXPECT_EQ(add64(kOne | kSignD, kTwoM53 | kSignD, kRMM), (R{(kOne + 1) | kSignD, kNX}));
  EXPECT_EQ(add64(kOne | kSignD, kTwoM53 | kSignD, kRDN), (R{(kOne + 1) | kSignD, kNX}));
  EXPECT_EQ(add64(kOne | kSignD, kTwoM53 | kSignD, kRUP), (R{kOne | kSignD, kNX}));
  // 1 + 2^-52 + 2^-53: a tie with an odd lower neighbour: both go up.
  EXPECT_EQ(add64(kOne + 1, kTwoM53, kRNE), (R{kOne + 2, kNX}));
  EXPECT_EQ(add64(kOne + 1, kTwoM53, kRMM), (R{kOne + 2, kNX}));
  // Exact results raise nothing.
  EXPECT_EQ(add64(kOne, kTwo, kRNE), (R{kThree, 0}));
  // x + (-x) is +0, except -0 when rounding down; -0 + -0 = -0.
  EXPECT_EQ(add64(kOne, kOne | kSignD, kRNE), (R{0, 0}));
  EXPECT_EQ(add64(kOne, kOne | kSignD, kRDN), (R{kSignD, 0}));
  EXPECT_EQ(add64(kSignD, kSignD, kRNE), (R{kSignD, 0}));
  EXPECT_EQ(add64(0, kSignD, kRNE), (R{0, 0}));
  EXPECT_EQ(add64(0, kSignD, kRDN), (R{kSignD, 0}));
}

TEST_P(FpuCoreTest, OverflowDependsOnRoundingMode) {
  EXPECT_EQ(add64(kMaxD, kMaxD, kRNE), (R{kInfD, kOF | kNX}));
  EXPECT_EQ(add64(kMaxD, kMaxD, kRTZ), (R{kMaxD, kOF | kNX}));
  EXPECT_EQ(add64(kMaxD, kMaxD, kRDN), (R{kMaxD, kOF | kNX}));
  EXPECT_EQ(add64(kMaxD, kMaxD, kRUP), (R{kInfD, kOF | kNX}));
  EXPECT_EQ(add64(kMaxD, kMaxD, kRMM), (R{kInfD, kOF | kNX}));
  const uint64_t n = kMaxD | kSignD;
  EXPECT_EQ(add64(n, n, kRDN), (R{kInfD | kSignD, kOF | kNX}));
  EXPECT_EQ(add64(n, n, kRUP), (R{n, kOF | kNX}));
  EXPECT_EQ(op32(Arith::Mul, kMaxF, 0x40000000, kRNE), (R{kInfF, kOF | kNX}));
  EXPECT_EQ(op32(Arith::Mul, kMaxF, 0x40000000, kRTZ), (R{kMaxF, kOF | kNX}));
}

TEST_P(FpuCoreTest, UnderflowIsDetectedAfterRounding) {
  // (1 - 2^-53) * 2^-1022 = 2^-1022 - 2^-1075: tiny even after rounding to 53 bits, and a tie
  // in the subnormal format: RNE gives the (even) min normal, with UF and NX.
  EXPECT_EQ(op64(Arith::Mul, 0x3fefffffffffffff, kMinNormD, kRNE), (R{kMinNormD, kUF | kNX}));
  EXPECT_EQ(op64(Arith::Mul, 0x3fefffffffffffff, kMinNormD, kRTZ),
            (R{0x000fffffffffffff, kUF | kNX}));
  // 2^-1022 - 2^-1077 rounds (unbounded exponent) to 2^-1022: not tiny after rounding, so only
  // NX (tininess before rounding would raise UF here).
  uint32_t f = 0;
  EXPECT_EQ(fma64(kTwoM53, 0x0000400000000000 | kSignD, kMinNormD, false, false, kRNE, f),
            kMinNormD);
  EXPECT_EQ(f, kNX);
  // An exact subnormal result is not an underflow.
  EXPECT_EQ(op64(Arith::Mul, 0x3fe0000000000000, kMinNormD, kRNE), (R{0x0008000000000000, 0}));
  // The smallest subnormal halved: a tie between 0 and it.
  EXPECT_EQ(op64(Arith::Mul, 1, 0x3fe0000000000000, kRNE), (R{0, kUF | kNX}));
  EXPECT_EQ(op64(Arith::Mul, 1, 0x3fe0000000000000, kRMM), (R{1, kUF | kNX}));
  EXPECT_EQ(op64(Arith::Mul, 1, 0x3fe0000000000000, kRUP), (R{1, kUF | kNX}));
}

TEST_P(FpuCoreTest, NaNsAreCanonicalAndSignallingOnesRaiseInvalid) {
  EXPECT_EQ(add64(kQNaNPayloadD, kOne, kRNE), (R{kCanonicalNaN64, 0}));
  EXPECT_EQ(add64(kSNaND, kOne, kRNE), (R{kCanonicalNaN64, kNV}));
  EXPECT_EQ(add64(kInfD, kInfD | kSignD, kRNE), (R{kCanonicalNaN64, kNV}));
  EXPECT_EQ(op64(Arith::Mul, kInfD, 0, kRNE), (R{kCanonicalNaN64, kNV}));
  EXPECT_EQ(op64(Arith::Div, 0, 0, kRNE), (R{kCanonicalNaN64, kNV}));
  EXPECT_EQ(op64(Arith::Div, kInfD, kInfD, kRNE), (R{kCanonicalNaN64, kNV}));
  EXPECT_EQ(op32(Arith::Add, kSNaNF, kOneF, kRNE), (R{kCanonicalNaN32, kNV}));
  EXPECT_EQ(op32(Arith::Sub, 0x7fc12345, kOneF, kRNE), (R{kCanonicalNaN32, 0}));
}

TEST_P(FpuCoreTest, DivisionAndSquareRoot) {
  EXPECT_EQ(op64(Arith::Div, kOne, 0, kRNE), (R{kInfD, kDZ}));
  EXPECT_EQ(op64(Arith::Div, kOne, kSignD, kRNE), (R{kInfD | kSignD, kDZ}));
  EXPECT_EQ(op64(Arith::Div, kOne, kThree, kRNE), (R{0x3fd5555555555555, kNX}));
  EXPECT_EQ(op64(Arith::Div, kOne, kThree, kRUP), (R{0x3fd5555555555556, kNX}));
  EXPECT_EQ(op64(Arith::Div, kOne, kThree, kRMM), (R{0x3fd5555555555555, kNX}));
  EXPECT_EQ(op32(Arith::Div, kOneF, 0x40400000, kRNE), (R{0x3eaaaaab, kNX}));
  EXPECT_EQ(op32(Arith::Div, kOneF, 0x40400000, kRTZ), (R{0x3eaaaaaa, kNX}));
  uint32_t f = 0;
  EXPECT_EQ(sqrt64(kTwo, kRNE, f), 0x3ff6a09e667f3bcdu);
  EXPECT_EQ(f, kNX);
  f = 0;
  EXPECT_EQ(sqrt64(kTwo, kRTZ, f), 0x3ff6a09e667f3bccu);
  f = 0;
  EXPECT_EQ(sqrt64(0x4010000000000000, kRMM, f), kTwo);  // sqrt(4) = 2 exactly
  EXPECT_EQ(f, 0u);
  EXPECT_EQ(sqrt64(kSignD, kRNE, f), kSignD);  // sqrt(-0) = -0
  EXPECT_EQ(f, 0u);
  EXPECT_EQ(sqrt64(kOne | kSignD, kRNE, f), kCanonicalNaN64);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(sqrt32(kInfF | 0x80000000, kRNE, f), kCanonicalNaN32);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(sqrt32(0x40000000, kRNE, f), 0x3fb504f3u);
  EXPECT_EQ(f, kNX);
}

TEST_P(FpuCoreTest, FusedMultiplyAddRoundsOnce) {
  uint32_t f = 0;
  // (1 + 2^-52) * (1 - 2^-52) - 1 = -2^-104 exactly: a separate multiply would round to 0.
  EXPECT_EQ(fma64(kOne + 1, 0x3feffffffffffffe, kOne, false, true, kRNE, f), 0xb970000000000000u);
  EXPECT_EQ(f, 0u);
  // The four forms: a*b+c, a*b-c, -(a*b)+c, -(a*b)-c with 2*3 and 1.
  f = 0;
  EXPECT_EQ(fma64(kTwo, kThree, kOne, false, false, kRNE, f), 0x401c000000000000u);   // 7
  EXPECT_EQ(fma64(kTwo, kThree, kOne, false, true, kRNE, f), 0x4014000000000000u);    // 5
  EXPECT_EQ(fma64(kTwo, kThree, kOne, true, false, kRNE, f), 0xc014000000000000u);    // -5
  EXPECT_EQ(fma64(kTwo, kThree, kOne, true, true, kRNE, f), 0xc01c000000000000u);     // -7
  EXPECT_EQ(f, 0u);
  // inf * 0 + qNaN raises NV on RISC-V; inf * 1 + qNaN does not.
  EXPECT_EQ(fma64(kInfD, 0, kQNaNPayloadD, false, false, kRNE, f), kCanonicalNaN64);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(fma64(kInfD, kOne, kQNaNPayloadD, false, false, kRNE, f), kCanonicalNaN64);
  EXPECT_EQ(f, 0u);
  // inf - inf inside the fma.
  EXPECT_EQ(fma64(kInfD, kOne, kInfD, false, true, kRNE, f), kCanonicalNaN64);
  EXPECT_EQ(f, kNV);
  // Exact zero results: +0 (-0 when rounding down); (+0 * x) + -0.
  f = 0;
  EXPECT_EQ(fma64(kOne, kOne, kOne, false, true, kRNE, f), 0u);
  EXPECT_EQ(fma64(kOne, kOne, kOne, false, true, kRDN, f), kSignD);
  EXPECT_EQ(fma64(0, kOne, kSignD, false, false, kRNE, f), 0u);
  EXPECT_EQ(fma64(kSignD, kOne, kSignD, false, false, kRNE, f), kSignD);
  EXPECT_EQ(f, 0u);
  // Single: 0.1f * 10 - 1 = 2^-26 exactly (a separate multiply rounds it away).
  EXPECT_EQ(fma32(0x3dcccccd, 0x41200000, kOneF, false, true, kRNE, f), 0x32800000u);
  EXPECT_EQ(f, 0u);
}

TEST_P(FpuCoreTest, MinMaxFollowVersion22) {
  uint32_t f = 0;
  EXPECT_EQ(minmax64(kSignD, 0, false, f), kSignD);  // min(-0, +0) = -0
  EXPECT_EQ(minmax64(0, kSignD, false, f), kSignD);
  EXPECT_EQ(minmax64(kSignD, 0, true, f), 0u);        // max(-0, +0) = +0
  EXPECT_EQ(minmax64(kQNaNPayloadD, kOne, false, f), kOne);
  EXPECT_EQ(minmax64(kOne, kQNaNPayloadD, true, f), kOne);
  EXPECT_EQ(f, 0u);
  EXPECT_EQ(minmax64(kSNaND, kOne, false, f), kOne);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(minmax64(kQNaNPayloadD, kQNaNPayloadD, true, f), kCanonicalNaN64);
  EXPECT_EQ(f, 0u);
  EXPECT_EQ(minmax32(0xbf800000, kOneF, false, f), 0xbf800000u);
  EXPECT_EQ(minmax32(0xbf800000, 0xc0000000, true, f), 0xbf800000u);
  EXPECT_EQ(minmax64(kInfD | kSignD, kMaxD | kSignD, false, f), kInfD | kSignD);
  EXPECT_EQ(f, 0u);
}

TEST_P(FpuCoreTest, ComparesAndClassify) {
  uint32_t f = 0;
  EXPECT_EQ(compare64(kSignD, 0, 0, f), 1u);  // -0 == +0
  EXPECT_EQ(compare64(kSignD, 0, 1, f), 0u);  // not -0 < +0
  EXPECT_EQ(compare64(kSignD, 0, 2, f), 1u);
  EXPECT_EQ(compare64(kOne | kSignD, kTwo | kSignD, 1, f), 0u);
  EXPECT_EQ(compare64(kTwo | kSignD, kOne | kSignD, 1, f), 1u);
  EXPECT_EQ(compare64(kQNaNPayloadD, kOne, 0, f), 0u);
  EXPECT_EQ(f, 0u) << "feq is quiet on qNaN";
  EXPECT_EQ(compare64(kSNaND, kOne, 0, f), 0u);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(compare64(kQNaNPayloadD, kOne, 1, f), 0u);
  EXPECT_EQ(f, kNV) << "flt signals on any NaN";
  f = 0;
  EXPECT_EQ(compare32(0x7fc00000, kOneF, 2, f), 0u);
  EXPECT_EQ(f, kNV);
  EXPECT_EQ(classify64(kInfD | kSignD), 1u << 0);
  EXPECT_EQ(classify64(kOne | kSignD), 1u << 1);
  EXPECT_EQ(classify64(1 | kSignD), 1u << 2);
  EXPECT_EQ(classify64(kSignD), 1u << 3);
  EXPECT_EQ(classify64(0), 1u << 4);
  EXPECT_EQ(classify64(1), 1u << 5);
  EXPECT_EQ(classify64(kOne), 1u << 6);
  EXPECT_EQ(classify64(kInfD), 1u << 7);
  EXPECT_EQ(classify64(kSNaND), 1u << 8);
  EXPECT_EQ(classify64(kCanonicalNaN64), 1u << 9);
  EXPECT_EQ(classify32(kSNaNF), 1u << 8);
  EXPECT_EQ(classify32(0x00000001), 1u << 5);
}

TEST_P(FpuCoreTest, FloatToIntegerSaturatesWithInvalid) {
  auto cvt = [](uint64_t v, unsigned width, bool is_signed, unsigned rm) {
    uint32_t f = 0;
    const uint64_t r = to_int64(v, width, is_signed, rm, f);
    return R{r, f};
  };
  const uint64_t k2p31 = 0x41e0000000000000, kM2p31Half = 0xc1e0000000100000;  // -2^31 - 0.5
  EXPECT_EQ(cvt(k2p31, 32, true, kRNE), (R{0x7fffffff, kNV}));
  EXPECT_EQ(cvt(kM2p31Half, 32, true, kRTZ), (R{0xffffffff80000000, kNX}));
  EXPECT_EQ(cvt(kM2p31Half, 32, true, kRNE), (R{0xffffffff80000000, kNX}));  // tie to even
  EXPECT_EQ(cvt(kM2p31Half, 32, true, kRMM), (R{0xffffffff80000000, kNV}));
  EXPECT_EQ(cvt(kM2p31Half, 32, true, kRDN), (R{0xffffffff80000000, kNV}));
  EXPECT_EQ(cvt(0xbfe0000000000000, 32, false, kRTZ), (R{0, kNX}));  // -0.5 -> 0 is fine
  EXPECT_EQ(cvt(0xbfe0000000000000, 32, false, kRDN), (R{0, kNV}));  // -1 is not
  EXPECT_EQ(cvt(kOne | kSignD, 64, false, kRNE), (R{0, kNV}));
  EXPECT_EQ(cvt(kCanonicalNaN64, 64, false, kRNE), (R{~uint64_t{0}, kNV}));
  EXPECT_EQ(cvt(kCanonicalNaN64, 32, true, kRNE), (R{0x7fffffff, kNV}));
  EXPECT_EQ(cvt(kCanonicalNaN64, 32, false, kRNE), (R{~uint64_t{0}, kNV}));
  EXPECT_EQ(cvt(0x41efffffffe00000, 32, false, kRNE), (R{~uint64_t{0}, 0}));  // 2^32 - 1
  EXPECT_EQ(cvt(kInfD | kSignD, 64, true, kRNE), (R{kSignD, kNV}));
  EXPECT_EQ(cvt(0x43e0000000000000, 64, true, kRNE), (R{0x7fffffffffffffff, kNV}));  // 2^63
  EXPECT_EQ(cvt(0xc3e0000000000000, 64, true, kRNE), (R{kSignD, 0}));  // -2^63 fits
  EXPECT_EQ(cvt(0x4004000000000000, 64, true, kRNE), (R{2, kNX}));  // 2.5 -> 2
  EXPECT_EQ(cvt(0x4004000000000000, 64, true, kRMM), (R{3, kNX}));
  EXPECT_EQ(cvt(0xc004000000000000, 64, true, kRUP), (R{~uint64_t{1}, kNX}));  // -2.5 -> -2
  EXPECT_EQ(cvt(1, 64, true, kRUP), (R{1, kNX}));  // min subnormal up to 1
  uint32_t f = 0;
  EXPECT_EQ(to_int32(0x4f800000, 64, false, kRNE, f), 0x100000000u);  // 2^32f
  EXPECT_EQ(f, 0u);
}

TEST_P(FpuCoreTest, IntegerToFloatAndBetweenFormats) {
  uint32_t f = 0;
  EXPECT_EQ(from_int32(0x7fffffffffffffff, 64, true, kRNE, f), 0x5f000000u);
  EXPECT_EQ(f, kNX);
  f = 0;
  EXPECT_EQ(from_int32(0x7fffffffffffffff, 64, true, kRTZ, f), 0x5effffffu);
  EXPECT_EQ(from_int64(~uint64_t{0}, 64, false, kRNE, f), 0x43f0000000000000u);
  EXPECT_EQ(f, kNX);
  f = 0;
  EXPECT_EQ(from_int32(~uint64_t{0}, 32, true, kRNE, f), 0xbf800000u);       // -1
  EXPECT_EQ(from_int64(~uint64_t{0}, 32, false, kRNE, f), 0x41efffffffe00000u);  // 2^32 - 1
  EXPECT_EQ(from_int64(kSignD, 64, true, kRNE, f), 0xc3e0000000000000u);
  EXPECT_EQ(from_int64(0, 64, true, kRDN, f), 0u);
  EXPECT_EQ(f, 0u);
  EXPECT_EQ(f64_to_f32(kSNaND, kRNE, f), kCanonicalNaN32);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(f64_to_f32(kMaxD, kRNE, f), kInfF);
  EXPECT_EQ(f, kOF | kNX);
  f = 0;
  EXPECT_EQ(f64_to_f32(kMaxD, kRTZ, f), kMaxF);
  f = 0;
  EXPECT_EQ(f64_to_f32(0x3fb999999999999a, kRNE, f), 0x3dcccccdu);  // 0.1
  EXPECT_EQ(f, kNX);
  f = 0;
  EXPECT_EQ(f64_to_f32(kMinNormD, kRNE, f), 0u);  // far below the binary32 range
  EXPECT_EQ(f, kUF | kNX);
  f = 0;
  EXPECT_EQ(f64_to_f32(kMinNormD, kRUP, f), 1u);
  f = 0;
  EXPECT_EQ(f32_to_f64(0x7fc00001, f), kCanonicalNaN64);
  EXPECT_EQ(f, 0u);
  EXPECT_EQ(f32_to_f64(kSNaNF, f), kCanonicalNaN64);
  EXPECT_EQ(f, kNV);
  f = 0;
  EXPECT_EQ(f32_to_f64(1, f), 0x36a0000000000000u);  // 2^-149, exact
  EXPECT_EQ(f32_to_f64(0x80000000, f), kSignD);
  EXPECT_EQ(f, 0u);
}

INSTANTIATE_TEST_SUITE_P(Engines, FpuCoreTest,
                         ::testing::Values(Engine::Auto, Engine::Software),
                         [](const auto& info) {
                           return info.param == Engine::Auto ? "Host" : "Software";
                         });

// Operands that reach every special case and rounding corner: zeros, infinities, NaNs,
// subnormals, the extremes, values near 1 and near the overflow/underflow thresholds, and
// random bit patterns.
template <int kE, int kM>
uint64_t edge_value(std::mt19937_64& rng) {
  const uint64_t r = rng();
  const uint64_t sign = (r & 1) ? uint64_t{1} << (kE + kM) : 0;
  const uint64_t exp_max = (uint64_t{1} << kE) - 1;
  const uint64_t bias = exp_max >> 1;
  uint64_t frac = rng() & ((uint64_t{1} << kM) - 1);
  switch ((r >> 1) % 12) {
    case 0: frac = (r >> 8) % 4; break;                                     // few low bits
    case 1: frac = ((uint64_t{1} << kM) - 1) - ((r >> 8) % 4); break;       // all ones
    case 2: frac &= ~((uint64_t{1} << (kM / 2)) - 1); break;                // short mantissa
    default: break;
  }
  uint64_t exp;
  switch ((r >> 12) % 10) {
    case 0: exp = 0; break;
    case 1: exp = exp_max; break;
    case 2: exp = 1 + (r >> 20) % 3; break;
    case 3: exp = exp_max - 1 - (r >> 20) % 3; break;
    case 4: case 5: exp = bias - 3 + (r >> 20) % 7; break;
    case 6: exp = bias / 2 + (r >> 20) % 3; break;      // squares near the underflow edge
    case 7: exp = bias + bias / 2 - (r >> 20) % 3; break;
    default: exp = (r >> 20) % (exp_max + 1); break;
  }
  return sign | exp << kM | frac;
}

// The host SSE/FMA3 path and the software path must agree bit for bit and flag for flag on
// RNE, RTZ, RDN and RUP (RMM is software in both).
TEST(FpuEnginesTest, HostAndSoftwareAgreeOnEdgeBiasedOperands) {
  std::mt19937_64 rng(0xf1a7);
  const int kCases = 150000;
  int compared = 0;
  for (int i = 0; i < kCases; ++i) {
    const unsigned rm = static_cast<unsigned>(i % 4);
    for (int fmt = 0; fmt < 2; ++fmt) {
      const bool dbl = fmt == 1;
      auto gen = [&] { return dbl ? edge_value<11, 52>(rng) : edge_value<8, 23>(rng); };
      const uint64_t a = gen(), b = gen(), c = gen();
      for (Arith op : {Arith::Add, Arith::Sub, Arith::Mul, Arith::Div}) {
        uint32_t fh = 0, fs = 0;
        set_engine(Engine::Auto);
        const uint64_t h = dbl ? arith64(op, a, b, rm, fh) : arith32(op, a, b, rm, fh);
        const uint64_t sw = dbl ? soft::arith64(op, a, b, rm, fs) : soft::arith32(op, a, b, rm, fs);
        ASSERT_EQ(h, sw) << "op " << int(op) << " dbl " << dbl << " rm " << rm << std::hex
                         << " a 0x" << a << " b 0x" << b;
        ASSERT_EQ(fh, fs) << "flags: op " << int(op) << " dbl " << dbl << " rm " << rm
                          << std::hex << " a 0x" << a << " b 0x" << b;
        ++compared;
      }
      {
        uint32_t fh = 0, fs = 0;
        const uint64_t h = dbl ? sqrt64(a, rm, fh) : sqrt32(a, rm, fh);
        const uint64_t sw = dbl ? soft::sqrt64(a, rm, fs) : soft::sqrt32(a, rm, fs);
        ASSERT_EQ(h, sw) << "sqrt dbl " << dbl << " rm " << rm << std::hex << " a 0x" << a;
        ASSERT_EQ(fh, fs) << "sqrt flags dbl " << dbl << " rm " << rm << std::hex << " a 0x" << a;
      }
      if (host_has_fma()) {
        // Products near c's magnitude exercise the cancellation paths.
        const uint64_t c2 = (i & 8) ? c : (dbl ? (a ^ 0x8000000000000000) : (a ^ 0x80000000));
        uint32_t fh = 0, fs = 0;
        const uint64_t h = dbl ? fma64(a, b, c2, false, false, rm, fh)
                               : fma32(a, b, c2, false, false, rm, fh);
        const uint64_t sw = dbl ? soft::fma64(a, b, c2, rm, fs) : soft::fma32(a, b, c2, rm, fs);
        ASSERT_EQ(h, sw) << "fma dbl " << dbl << " rm " << rm << std::hex << " a 0x" << a
                         << " b 0x" << b << " c 0x" << c2;
        ASSERT_EQ(fh, fs) << "fma flags dbl " << dbl << " rm " << rm << std::hex << " a 0x" << a
                          << " b 0x" << b << " c 0x" << c2;
      }
    }
  }
  EXPECT_EQ(compared, kCases * 8);
}

// The host path must not depend on (or change) the caller's floating-point environment.
TEST(FpuEnginesTest, HostPathIgnoresAndKeepsCallerMxcsr) {
  uint32_t saved = 0;
  __asm__ volatile("stmxcsr %0" : "=m"(saved));
  const uint32_t odd = (saved & ~0x7fffu) | 0x1f80u | (3u << 13) | 0x8040u;  // RTZ, FTZ, DAZ
  __asm__ volatile("ldmxcsr %0" ::"m"(odd));
  uint32_t f = 0;
  const uint64_t r = arith64(Arith::Add, 0x3fb999999999999a, 0x3fc999999999999a, kRNE, f);
  const uint64_t sub = arith64(Arith::Mul, 0x3fe0000000000000, 0x0010000000000000, kRNE, f);
  uint32_t now = 0;
  __asm__ volatile("stmxcsr %0" : "=m"(now));
  __asm__ volatile("ldmxcsr %0" ::"m"(saved));
  EXPECT_EQ(r, 0x3fd3333333333334u);
  EXPECT_EQ(sub, 0x0008000000000000u) << "FTZ of the caller must not flush our result";
  EXPECT_EQ(now & ~0x3fu, odd & ~0x3fu) << "the caller's MXCSR is restored";
}

// ---- the hart ----
namespace fp {
inline uint32_t r4(uint32_t opc, uint32_t rd, uint32_t a, uint32_t b, uint32_t c, uint32_t fmt, uint32_t rm) {
  return c << 27 | fmt << 25 | b << 20 | a << 15 | rm << 12 | rd << 7 | opc;
}
inline uint32_t opfp(uint32_t f5, uint32_t fmt, uint32_t rd, uint32_t a, uint32_t b, uint32_t rm) {
  return rv::r_type(f5 << 2 | fmt, b, a, rm, rd, 0x53);
}
inline uint32_t fadd_d(uint32_t rd, uint32_t a, uint32_t b, uint32_t rm = 7) { return opfp(0, 1, rd, a, b, rm); }
inline uint32_t fadd_s(uint32_t rd, uint32_t a, uint32_t b, uint32_t rm = 7) { return opfp(0, 0, rd, a, b, rm); }
inline uint32_t fdiv_d(uint32_t rd, uint32_t a, uint32_t b, uint32_t rm = 7) { return opfp(3, 1, rd, a, b, rm); }
inline uint32_t fmul_d(uint32_t rd, uint32_t a, uint32_t b, uint32_t rm = 7) { return opfp(2, 1, rd, a, b, rm); }
inline uint32_t fmul_s(uint32_t rd, uint32_t a, uint32_t b, uint32_t rm = 7) { return opfp(2, 0, rd, a, b, rm); }
inline uint32_t fsqrt_d(uint32_t rd, uint32_t a, uint32_t rm = 7) { return opfp(0x0b, 1, rd, a, 0, rm); }
inline uint32_t fmv_x_d(uint32_t rd, uint32_t rs1) { return opfp(0x1c, 1, rd, rs1, 0, 0); }
inline uint32_t fmadd_d(uint32_t rd, uint32_t a, uint32_t b, uint32_t c, uint32_t rm = 7) {
  return r4(0x43, rd, a, b, c, 1, rm);
}
inline uint32_t fnmsub_s(uint32_t rd, uint32_t a, uint32_t b, uint32_t c, uint32_t rm = 7) {
  return r4(0x4b, rd, a, b, c, 0, rm);
}
inline uint32_t fld(uint32_t rd, uint32_t rs1, int32_t imm) { return rv::i_type(imm, rs1, 3, rd, 0x07); }
inline uint32_t flw(uint32_t rd, uint32_t rs1, int32_t imm) { return rv::i_type(imm, rs1, 2, rd, 0x07); }
inline uint32_t fsd(uint32_t rs2, uint32_t rs1, int32_t imm) { return rv::s_type(imm, rs2, rs1, 3, 0x27); }
inline uint32_t fsw(uint32_t rs2, uint32_t rs1, int32_t imm) { return rv::s_type(imm, rs2, rs1, 2, 0x27); }
inline uint32_t fmv_x_w(uint32_t rd, uint32_t rs1) { return opfp(0x1c, 0, rd, rs1, 0, 0); }
inline uint32_t fmv_w_x(uint32_t rd, uint32_t rs1) { return opfp(0x1e, 0, rd, rs1, 0, 0); }
inline uint32_t fmv_d_x(uint32_t rd, uint32_t rs1) { return opfp(0x1e, 1, rd, rs1, 0, 0); }
inline uint32_t fcvt_w_d(uint32_t rd, uint32_t rs1, uint32_t rm) { return opfp(0x18, 1, rd, rs1, 0, rm); }
inline uint32_t feq_d(uint32_t rd, uint32_t a, uint32_t b) { return opfp(0x14, 1, rd, a, b, 2); }
// Compressed: c.fld/c.fsd (rd'/rs2', rs1' are x8..x15/f8..f15) and c.fldsp/c.fsdsp.
inline uint16_t c_fld(uint32_t rd, uint32_t rs1, uint32_t off) {
  return static_cast<uint16_t>(1u << 13 | ((off >> 3) & 7) << 10 | (rs1 - 8) << 7 |
                               ((off >> 6) & 3) << 5 | (rd - 8) << 2);
}
inline uint16_t c_fsd(uint32_t rs2, uint32_t rs1, uint32_t off) {
  return static_cast<uint16_t>(c_fld(rs2, rs1, off) | 4u << 13);
}
inline uint16_t c_fldsp(uint32_t rd, uint32_t off) {
  return static_cast<uint16_t>(1u << 13 | ((off >> 5) & 1) << 12 | rd << 7 | ((off >> 3) & 3) << 5 |
                               ((off >> 6) & 7) << 2 | 2);
}
inline uint16_t c_fsdsp(uint32_t rs2, uint32_t off) {
  return static_cast<uint16_t>(5u << 13 | ((off >> 3) & 7) << 10 | ((off >> 6) & 7) << 7 | rs2 << 2 | 2);
}
}  // namespace fp

constexpr uint16_t kMstatus = 0x300, kSstatus = 0x100, kMcause = 0x342, kMtval = 0x343;
constexpr uint16_t kFflags = 0x001, kFrm = 0x002, kFcsr = 0x003;
constexpr uint64_t kFsMask = 3ull << 13, kFsInitial = 1ull << 13, kSd = 1ull << 63;

class CpuFpTest : public HartTest {
 protected:
  void fs_initial() {
    Program p;
    p.li(t6, kFsInitial) << rv::csrrs(0, kMstatus, t6);
    setup(p);
  }
};

TEST_F(CpuFpTest, FsOffMakesEveryFpInstructionIllegal) {
  for (uint32_t insn : {fp::fadd_d(1, 2, 3), fp::fld(1, a0, 0), fp::fsd(1, a0, 0),
                        fp::fmv_x_w(a1, 1), rv::csrr(a1, kFflags), rv::csrr(a1, kFcsr),
                        rv::csrrwi(0, kFrm, 1)}) {
    halt_on_trap();
    hart_.set_reg(a0, kData);
    Program p;
    p << insn << rv::kWfi;
    ASSERT_EQ(run_program(p), HartStop::Wfi);
    EXPECT_EQ(hart_.csr(kMcause), 2u) << std::hex << insn;
    EXPECT_EQ(hart_.csr(kMtval), insn);
  }
  // Compressed FP loads/stores too.
  halt_on_trap();
  Program c;
  c.c(fp::c_fldsp(1, 8)).c(0).c(0);
  ASSERT_EQ(run_program(c), HartStop::Wfi);
  EXPECT_EQ(hart_.csr(kMcause), 2u);
}

TEST_F(CpuFpTest, FpWritesSetFsDirtyAndSd) {
  halt_on_trap();
  fs_initial();
  EXPECT_EQ(hart_.csr(kMstatus) & (kFsMask | kSd), kFsInitial);
  Program p;
  p << fp::fsd(1, a0, 0) << rv::csrr(a1, kMstatus);  // a store does not change FP state
  p << fp::fld(2, a0, 0) << rv::csrr(a2, kMstatus) << rv::csrr(a3, kSstatus) << rv::kWfi;
  hart_.set_reg(a0, kData);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1) & kFsMask, kFsInitial);
  EXPECT_EQ(hart_.reg(a2) & (kFsMask | kSd), kFsMask | kSd);
  EXPECT_EQ(hart_.reg(a3) & (kFsMask | kSd), kFsMask | kSd) << "sstatus shows FS and SD";

  // Clean (2) after an OS saved the registers; an fcsr write makes it Dirty again.
  Program q;
  q.li(t0, kFsMask) << rv::csrrc(0, kMstatus, t0);
  q.li(t0, 2ull << 13) << rv::csrrs(0, kMstatus, t0) << rv::csrr(a1, kMstatus);
  q << rv::csrrwi(0, kFrm, 2) << rv::csrr(a2, kMstatus) << rv::kWfi;
  ASSERT_EQ(run_program(q), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1) & (kFsMask | kSd), 2ull << 13);
  EXPECT_EQ(hart_.reg(a2) & (kFsMask | kSd), kFsMask | kSd);
}

TEST_F(CpuFpTest, ArithmeticRoundingModesAndFlags) {
  halt_on_trap();
  fs_initial();
  Program p;
  p.li(t0, kOne) << fp::fmv_d_x(1, t0);
  p.li(t0, kThree) << fp::fmv_d_x(2, t0);
  p << fp::fdiv_d(3, 1, 2, 0)        // RNE static
    << fp::fdiv_d(4, 1, 2, 3)        // RUP static
    << rv::csrrwi(0, kFrm, 3)        // frm = RUP
    << fp::fdiv_d(5, 1, 2)           // dynamic -> RUP
    << rv::csrrwi(a1, kFflags, 0)    // read and clear the flags
    << fp::fadd_d(6, 1, 1, 0) << rv::csrr(a2, kFflags)  // exact: no flags
    << rv::csrr(a3, kFcsr) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.freg(3), 0x3fd5555555555555u);
  EXPECT_EQ(hart_.freg(4), 0x3fd5555555555556u);
  EXPECT_EQ(hart_.freg(5), 0x3fd5555555555556u);
  EXPECT_EQ(hart_.freg(6), kTwo);
  EXPECT_EQ(hart_.reg(a1), kNX);
  EXPECT_EQ(hart_.reg(a2), 0u);
  EXPECT_EQ(hart_.reg(a3), 3u << 5) << "fcsr = frm << 5 | fflags";
}

TEST_F(CpuFpTest, ReservedRoundingModesAreIllegal) {
  fs_initial();
  for (uint32_t rm : {5u, 6u}) {
    halt_on_trap();
    Program p;
    p << fp::fadd_d(1, 2, 3, rm) << rv::kWfi;
    ASSERT_EQ(run_program(p), HartStop::Wfi);
    EXPECT_EQ(hart_.csr(kMcause), 2u) << "static rm " << rm;
  }
  for (uint32_t frm : {5u, 6u, 7u}) {
    halt_on_trap();
    Program p;
    p << rv::csrrwi(0, kFrm, frm) << fp::fadd_d(1, 2, 3) << rv::kWfi;
    ASSERT_EQ(run_program(p), HartStop::Wfi);
    EXPECT_EQ(hart_.csr(kMcause), 2u) << "dynamic with frm " << frm;
    EXPECT_EQ(hart_.csr(kMtval), fp::fadd_d(1, 2, 3));
  }
  // Instructions without a rounding mode do not care about frm.
  halt_on_trap();
  Program q;
  q << rv::csrrwi(0, kFrm, 5) << fp::feq_d(a1, 0, 0) << rv::kWfi;
  hart_.set_freg(0, kOne);
  ASSERT_EQ(run_program(q), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1), 1u);
}

TEST_F(CpuFpTest, SinglesAreNaNBoxed) {
  halt_on_trap();
  fs_initial();
  poke64(kData, 0x1234567880000001);
  Program p;
  p << fp::flw(1, a0, 0)            // boxes 0x80000001
    << fp::fmv_x_w(a1, 1)           // sign-extends the low 32 bits
    << fp::fadd_s(2, 3, 3, 0)       // f3 is badly boxed: canonical NaN
    << fp::fmv_w_x(4, a2)           // boxes the low 32 bits of a2
    << fp::fsw(4, a0, 8) << fp::fld(5, a0, 8)
    << fp::fnmsub_s(6, 7, 7, 7, 0)  // -(1*1) + 1 = +0 from three boxed ones
    << rv::kWfi;
  hart_.set_reg(a0, kData);
  hart_.set_reg(a2, 0xabcdef013f800000);
  hart_.set_freg(3, 0x000000003f800000);
  hart_.set_freg(7, 0xffffffff3f800000);
  poke64(kData + 8, 0);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.freg(1), 0xffffffff80000001u);
  EXPECT_EQ(hart_.reg(a1), 0xffffffff80000001u);
  EXPECT_EQ(hart_.freg(2), 0xffffffff7fc00000u);
  EXPECT_EQ(hart_.freg(4), 0xffffffff3f800000u);
  EXPECT_EQ(hart_.freg(5), 0x000000003f800000u) << "fsw stores 32 bits";
  EXPECT_EQ(hart_.freg(6), 0xffffffff00000000u);
}

TEST_F(CpuFpTest, ConversionWritesIntegerRegisterAndX0StaysZero) {
  halt_on_trap();
  fs_initial();
  Program p;
  p.li(t0, 0x41e0000000000000) << fp::fmv_d_x(1, t0);  // 2^31
  p << fp::fcvt_w_d(a1, 1, 1) << fp::fcvt_w_d(0, 1, 1) << rv::csrr(a2, kFflags)
    << fp::fmadd_d(2, 1, 1, 1, 0) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1), 0x7fffffffu);
  EXPECT_EQ(hart_.reg(0), 0u);
  EXPECT_EQ(hart_.reg(a2), kNV);
  EXPECT_EQ(hart_.freg(2), 0x43d0000000200000u) << "2^62 + 2^31 via rs3";
}

TEST_F(CpuFpTest, CompressedLoadsAndStores) {
  halt_on_trap();
  fs_initial();
  poke64(kData + 16, 0x1111111111111111);
  poke64(kData + 0x1f8, 0x2222222222222222);
  Program p;
  p.c(fp::c_fld(9, 10, 16))        // f9 = [a0 + 16]
      .c(fp::c_fsd(9, 10, 24))     // [a0 + 24] = f9
      .c(fp::c_fldsp(0, 0x1f8))    // f0 = [sp + 0x1f8]
      .c(fp::c_fsdsp(0, 0x100));   // [sp + 0x100] = f0
  p << rv::kWfi;
  hart_.set_reg(a0, kData);
  hart_.set_reg(sp, kData);
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.freg(9), 0x1111111111111111u);
  EXPECT_EQ(peek64(kData + 24), 0x1111111111111111u);
  EXPECT_EQ(hart_.freg(0), 0x2222222222222222u);
  EXPECT_EQ(peek64(kData + 0x100), 0x2222222222222222u);
}

TEST_F(CpuFpTest, PauseAndFenceTsoAreHints) {
  // Zihintpause's pause (fence w,0) and fence.tso (fm = 1000) retire as fences/no-ops.
  halt_on_trap();
  Program p;
  p << 0x0100000fu << 0x8330000fu << rv::addi(a1, 0, 5) << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  EXPECT_EQ(hart_.reg(a1), 5u);
  EXPECT_EQ(hart_.pc(), kCode + p.size()) << "no trap: the WFI at the end retired";
}

TEST_F(CpuFpTest, SnapshotCoversFpState) {
  hart_.set_freg(5, 0x123456789abcdef0);
  fs_initial();
  write_csr(kFcsr, 0x5f);
  testing::VectorSink sink;
  StateWriter out(sink);
  hart_.save(out);
  hart_.set_freg(5, 0);
  write_csr(kFcsr, 0);
  testing::VectorSource source(sink.bytes);
  StateReader in(source);
  hart_.restore(in);
  EXPECT_EQ(hart_.freg(5), 0x123456789abcdef0u);
  EXPECT_EQ(hart_.csr(kFcsr), 0x5fu);
  EXPECT_EQ(hart_.csr(kMstatus) & kFsMask, kFsMask);
}

// Determinism across host paths: a program of random F/D operations (random bit patterns, so
// NaNs, infinities, subnormals, overflow and underflow are common) in random dynamic rounding
// modes and RMM, clearing a random subset of fflags each round (the host path keeps flags in
// MXCSR between instructions, so clears must reach it), ends in the same hart state, byte for
// byte, on the host SSE/FMA3 path and on the software path.
TEST_F(CpuFpTest, HostAndSoftwarePathsReachTheSameHartState) {
  constexpr uint64_t kRounds = 20000;
  Program body;
  body << rv::mul(a0, a0, a2) << rv::add(a0, a0, a3) << fp::fmv_d_x(1, a0)
       << rv::mul(a0, a0, a2) << rv::add(a0, a0, a3) << fp::fmv_d_x(2, a0)
       << rv::srli(t0, a0, 62) << rv::csrw(kFrm, t0)
       << fp::fadd_d(3, 1, 2) << fp::fmul_d(4, 1, 2) << fp::fdiv_d(5, 1, 2)
       << fp::fsqrt_d(6, 1) << fp::fmadd_d(7, 1, 2, 3) << fp::fadd_d(8, 4, 5, 4)
       << fp::fmv_w_x(9, a0) << rv::srli(t1, a0, 32) << fp::fmv_w_x(10, t1)
       << fp::fmul_s(11, 9, 10) << fp::fnmsub_s(12, 9, 10, 11)
       << rv::andi(t4, a0, 0x1f) << rv::csrrc(t2, kFflags, t4)
       << rv::slli(t3, s0, 5) << rv::sub(s0, t3, s0) << rv::add(s0, s0, t2);
  for (uint32_t reg : {3u, 4u, 5u, 6u, 7u, 8u}) {
    body << fp::fmv_x_d(t3, reg) << rv::slli(t5, s1, 7) << rv::xor_(s1, t5, s1)
         << rv::add(s1, s1, t3);
  }
  body << fp::fmv_x_w(t3, 12) << rv::add(s1, s1, t3) << rv::addi(a1, a1, -1);
  Program loop;
  loop.li(a0, 0x9e3779b97f4a7c15).li(a1, kRounds).li(a2, 6364136223846793005u)
      .li(a3, 1442695040888963407u);
  const size_t loop_start = loop.size();
  for (size_t i = 0; i < body.size(); i += 4) {
    uint32_t insn = 0;
    for (int b = 0; b < 4; ++b) insn |= uint32_t{body.bytes()[i + b]} << (8 * b);
    loop << insn;
  }
  loop << rv::bne(a1, zero, -static_cast<int32_t>(loop.size() - loop_start)) << rv::kWfi;

  std::vector<uint8_t> states[2];
  uint64_t flag_fold[2] = {};
  for (int i = 0; i < 2; ++i) {
    set_engine(i == 0 ? Engine::Auto : Engine::Software);
    hart_.reset(kCode);
    hart_.set_icount(0);
    fs_initial();
    const HartStop stop = run_program(loop, 10'000'000);
    set_engine(Engine::Auto);
    ASSERT_EQ(stop, HartStop::Wfi);
    ASSERT_EQ(hart_.reg(a1), 0u) << "the loop ran to its end";
    flag_fold[i] = hart_.reg(s0);
    testing::VectorSink sink;
    StateWriter out(sink);
    hart_.save(out);
    states[i] = sink.bytes;
  }
  EXPECT_NE(flag_fold[0], 0u) << "the program raised flags";
  EXPECT_EQ(flag_fold[0], flag_fold[1]) << "fflags differ between the host and software paths";
  ASSERT_EQ(states[0].size(), states[1].size());
  for (size_t i = 0; i < states[0].size(); ++i) {
    ASSERT_EQ(states[0][i], states[1][i]) << "hart state differs between the host and software "
                                             "paths at byte " << i;
  }
}

// The guest's rounding mode never leaks into the host thread's MXCSR: after running guest
// code in RTZ, RDN and RUP the caller's control bits are as before.
TEST_F(CpuFpTest, GuestRoundingModeDoesNotLeakIntoHostMxcsr) {
  uint32_t before = 0, after = 0;
  __asm__ volatile("stmxcsr %0" : "=m"(before));
  fs_initial();
  Program p;
  p.li(t0, 0x3fb999999999999a) << fp::fmv_d_x(1, t0) << fp::fmv_d_x(2, t0);
  for (uint32_t rm : {1u, 2u, 3u}) {
    p << rv::csrrwi(0, kFrm, rm) << fp::fdiv_d(3, 1, 2) << fp::fadd_d(4, 1, 2)
      << fp::fmadd_d(5, 1, 2, 4);
  }
  p << rv::kWfi;
  ASSERT_EQ(run_program(p), HartStop::Wfi);
  __asm__ volatile("stmxcsr %0" : "=m"(after));
  EXPECT_EQ(after & ~0x3fu, before & ~0x3fu) << std::hex << "MXCSR " << before << " -> " << after;
  EXPECT_EQ(hart_.csr(kFrm), 3u);
}

}  // namespace
}  // namespace tandem::vmm::test
