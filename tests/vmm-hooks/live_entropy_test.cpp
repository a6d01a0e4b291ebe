// The Live world's entropy (what a guest's virtio-rng returns under `tandem run`): the same
// bytes in every run at the same icount, so a guest that seeds itself from the device (Linux)
// still reaches the same state hash twice; yet different bytes per request, not a constant.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <vector>

#include "scripted_console.h"
#include "vmm-hooks/live.h"

namespace tandem::hooks {
namespace {

std::vector<uint8_t> draw(Live& live, uint64_t icount, size_t n) {
  std::vector<uint8_t> out(n, 0xAA);
  live.entropy(icount, out);
  return out;
}

TEST(LiveEntropy, SameIcountsGiveTheSameBytesInEveryRun) {
  testing::ScriptedConsole console_a, console_b;
  Live a(console_a), b(console_b);
  for (uint64_t icount : {100u, 100u, 5000u, 123456789u}) {
    EXPECT_EQ(draw(a, icount, 37), draw(b, icount, 37)) << "icount " << icount;
  }
}

TEST(LiveEntropy, RequestsDifferByIcountAndWithinOneInstruction) {
  testing::ScriptedConsole console;
  Live live(console);
  const std::vector<std::vector<uint8_t>> draws = {
      draw(live, 10, 32), draw(live, 10, 32),  // two requests in the same instruction
      draw(live, 11, 32), draw(live, 12, 32)};
  for (size_t i = 0; i < draws.size(); ++i)
    for (size_t j = i + 1; j < draws.size(); ++j) EXPECT_NE(draws[i], draws[j]) << i << " vs " << j;
  // Every byte of a request is filled (no 0xAA left over from the buffer, no zero words).
  const auto bytes = draw(live, 99, 64);
  size_t untouched = 0, zero = 0;
  for (uint8_t byte : bytes) {
    untouched += byte == 0xAA;
    zero += byte == 0;
  }
  EXPECT_LT(untouched, 4u);
  EXPECT_LT(zero, 4u);
}

TEST(LiveEntropy, AFreshWorldAtALaterIcountContinuesTheSameStream) {
  // A run restored from a snapshot has a new Live: its requests match the original run's.
  testing::ScriptedConsole console_a, console_b;
  Live original(console_a), restored(console_b);
  draw(original, 1000, 16);
  draw(original, 1000, 16);
  EXPECT_EQ(draw(original, 2000, 16), draw(restored, 2000, 16));
  EXPECT_EQ(draw(original, 2000, 16), draw(restored, 2000, 16));
}

}  // namespace
}  // namespace tandem::hooks
