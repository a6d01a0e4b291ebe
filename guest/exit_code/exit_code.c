// exit_code: exits through the test finisher's failure path with a known code, so the
// tests can check that `tandem run` turns (code << 16) | 0x3333 into exit status `code`
// exactly as QEMU does.
#include "guest.h"

#define EXIT_CODE 42

int main(void) {
  printf("exiting with status %d\n", EXIT_CODE);
  return EXIT_CODE;
}
