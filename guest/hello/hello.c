// hello: the smallest useful guest. Prints a greeting and a few facts the boot protocol
// hands over (hart id, a DTB pointer is present), then exits through the test finisher.
#include "guest.h"

int main(uint64_t hartid, uint64_t dtb) {
  printf("Hello from a Tandem guest!\n");
  printf("hart %lu running in M-mode\n", hartid);
  printf("device tree %s\n", dtb ? "provided" : "missing");
  // Known arithmetic so a broken CPU shows up even in the simplest guest.
  uint64_t sum = 0;
  for (uint64_t i = 1; i <= 100; i++) sum += i;
  printf("sum 1..100 = %lu\n", sum);
  printf("bye\n");
  return sum == 5050 ? 0 : 1;
}
