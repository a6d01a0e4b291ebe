// fptest: a static glibc program (riscv64-linux-gnu-gcc -march=rv64gc -mabi=lp64d) for the
// Linux guest, started as init (rdinit=/fptest). Exercises what stock RV64GC userland needs
// from the F/D hardware and the kernel's FP context switching: printf of doubles, strtod,
// libm, setjmp/longjmp, fenv rounding modes and flags, and threads and two processes computing
// with doubles concurrently (each must get its own results across context switches: the
// kernel's lazy FP save/restore keyed on sstatus.FS). Its output must be
// identical on QEMU and Tandem (tests/guests/linux_fp_test.py). Powers the machine off.
#include <fenv.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/wait.h>
#include <unistd.h>

static jmp_buf jump;
static volatile double kept;

static void jumper(double v) {
  kept = v * 2;
  longjmp(jump, 7);
}

struct work {
  int id;
  double seed;
  double result;
};

// Enough work that the timer preempts the threads mid-computation; every thread's answer
// depends only on its own seed.
static void *compute(void *arg) {
  struct work *w = arg;
  double x = w->seed, acc = 0;
  for (int i = 1; i <= 400000; ++i) {
    x = fma(x, 1.0000001, 1.0 / i);
    acc += sqrt(fabs(x)) * (i & 1 ? 1 : -1);
    if (x > 1e6) x = x / 3.0;
  }
  w->result = acc + x;
  return NULL;
}

int main(void) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("fptest: start\n");
  printf("printf: %.17g %g %e %a %.3f %f\n", 0.1, 1e300 * 10, -2.5e-310, 1.0 / 3, 2.0 / 3, -0.0);
  const char *inputs[] = {"3.14159265358979323846", "1e-320", "0x1.8p1", "-inf", "nan",
                          "2.2250738585072011e-308", "1.7976931348623159e308"};
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; ++i) {
    char *end;
    const double v = strtod(inputs[i], &end);
    uint64_t bits;
    memcpy(&bits, &v, 8);
    printf("strtod(%s) = %.17g bits %016llx\n", inputs[i], v, (unsigned long long)bits);
  }
  printf("strtof(0.1) = %.9g\n", (double)strtof("0.1", NULL));
  volatile double a = 0.5, b = 2.0, c = 10.0;
  printf("libm: sin %.17g cos %.17g exp %.17g log %.17g pow %.17g\n", sin(a), cos(a), exp(b),
         log(c), pow(b, 0.5));
  printf("libm: atan2 %.17g tanh %.17g cbrt %.17g hypot %.17g fmod %.17g\n", atan2(a, b),
         tanh(a), cbrt(c), hypot(a, b), fmod(c, 3.0));
  printf("libm: lgamma %.17g erf %.17g expm1 %.17g log1p %.17g floor %g ceil %g\n", lgamma(c),
         erf(a), expm1(1e-10), log1p(1e-10), floor(-2.5), ceil(-2.5));
  printf("float: sinf %.9g sqrtf %.9g\n", (double)sinf((float)a), (double)sqrtf(2.0f));

  static const int modes[] = {FE_TONEAREST, FE_TOWARDZERO, FE_DOWNWARD, FE_UPWARD};
  static const char *names[] = {"nearest", "towardzero", "downward", "upward"};
  for (int i = 0; i < 4; ++i) {
    fesetround(modes[i]);
    volatile double one = 1.0, three = 3.0;
    const double q = one / three;
    printf("fenv %s: 1/3 = %.17g rint(2.5) = %g lrint(-2.5) = %ld\n", names[i], q, rint(2.5),
           lrint(-2.5));
  }
  fesetround(FE_TONEAREST);
  feclearexcept(FE_ALL_EXCEPT);
  volatile double zero = 0.0, big = 1e308;
  volatile double r1 = 1.0 / zero;
  volatile double r2 = big * 10;
  volatile double r3 = zero / zero;
  (void)r1; (void)r2; (void)r3;
  printf("fenv flags: divbyzero %d overflow %d invalid %d inexact %d\n",
         fetestexcept(FE_DIVBYZERO) != 0, fetestexcept(FE_OVERFLOW) != 0,
         fetestexcept(FE_INVALID) != 0, fetestexcept(FE_INEXACT) != 0);

  const int got = setjmp(jump);
  if (got == 0) jumper(21.5);
  printf("setjmp: returned %d, kept %g\n", got, kept);

  enum { kThreads = 4 };
  pthread_t threads[kThreads];
  struct work work[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    work[i] = (struct work){i, 1.0 + i * 0.25, 0};
    pthread_create(&threads[i], NULL, compute, &work[i]);
  }
  struct work alone[kThreads];
  for (int i = 0; i < kThreads; ++i) pthread_join(threads[i], NULL);
  int same = 1;
  for (int i = 0; i < kThreads; ++i) {
    alone[i] = (struct work){i, 1.0 + i * 0.25, 0};
    compute(&alone[i]);
    same &= memcmp(&alone[i].result, &work[i].result, 8) == 0;
    printf("thread %d: %.17g\n", i, work[i].result);
  }
  printf("threads: %s\n", same ? "each got its own results" : "RESULTS DIFFER");

  // Two processes (separate address spaces, so separate FP contexts the kernel switches
  // between): the child computes with one seed while the parent computes with another; the
  // child sends its result's bits through a pipe. Both must equal the same work done alone.
  int fds[2];
  int procs_same = 0;
  if (pipe(fds) == 0) {
    struct work mine = {0, 2.5, 0}, childs = {1, 3.75, 0};
    const pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      compute(&childs);
      const ssize_t n = write(fds[1], &childs.result, 8);
      _exit(n == 8 ? 0 : 1);
    }
    close(fds[1]);
    if (pid > 0) {
      compute(&mine);
      double from_child = 0;
      const ssize_t n = read(fds[0], &from_child, 8);
      int status = 0;
      waitpid(pid, &status, 0);
      struct work mine_alone = {0, 2.5, 0}, child_alone = {1, 3.75, 0};
      compute(&mine_alone);
      compute(&child_alone);
      procs_same = n == 8 && WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
                   memcmp(&mine.result, &mine_alone.result, 8) == 0 &&
                   memcmp(&from_child, &child_alone.result, 8) == 0;
      printf("process parent: %.17g child: %.17g\n", mine.result, from_child);
    }
    close(fds[0]);
  }
  printf("processes: %s\n", procs_same ? "each got its own results" : "RESULTS DIFFER");
  same &= procs_same;
  printf("fptest: %s\n", same ? "PASS" : "FAIL");
  sync();
  reboot(RB_POWER_OFF);
  return 0;
}
