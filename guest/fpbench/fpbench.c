// fpbench: an FP-heavy workload for measuring the emulator's F/D path (bench/cpu runs it on
// Tandem and on QEMU -icount shift=0 beside the integer bench). Each iteration: a 16x16
// double matrix multiply (fmadd), an n-body step of five bodies (fdiv, fsqrt), and a few
// single-precision ops and conversions; everything folds into a checksum of result bits,
// printed at the end, so the output also compares QEMU and Tandem bit for bit.
#include "guest.h"

#ifndef FPBENCH_ITERATIONS
#error "define FPBENCH_ITERATIONS"
#endif

#define N 16
#define BODIES 5

// Page-aligned, so the data the loop writes never shares a 4 KiB page with code (a store to a
// code page makes both emulators drop their translations of it).
static double A[N][N] __attribute__((aligned(4096))), B[N][N], C[N][N];

struct body {
  double x, y, z, vx, vy, vz, mass;
};
static struct body bodies[BODIES];

// fsqrt directly (the builtins would call libm's sqrt for errno handling).
static inline double sqrt_d(double x) {
  double r;
  __asm__("fsqrt.d %0, %1" : "=f"(r) : "f"(x));
  return r;
}
static inline float sqrt_s(float x) {
  float r;
  __asm__("fsqrt.s %0, %1" : "=f"(r) : "f"(x));
  return r;
}

static uint64_t bits_of(double d) {
  uint64_t u;
  memcpy(&u, &d, 8);
  return u;
}

static void matmul(void) {
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < N; ++k) acc += A[i][k] * B[k][j];
      C[i][j] = acc;
    }
  // Feed the result back (scaled) so values stay bounded and every iteration differs.
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) A[i][j] = C[i][j] * (1.0 / 16.0) + 0.001 * (double)(i - j);
}

static void nbody_step(double dt) {
  for (int i = 0; i < BODIES; ++i)
    for (int j = i + 1; j < BODIES; ++j) {
      const double dx = bodies[i].x - bodies[j].x, dy = bodies[i].y - bodies[j].y,
                   dz = bodies[i].z - bodies[j].z;
      const double d2 = dx * dx + dy * dy + dz * dz + 0.01;
      const double mag = dt / (d2 * sqrt_d(d2));
      bodies[i].vx -= dx * bodies[j].mass * mag;
      bodies[i].vy -= dy * bodies[j].mass * mag;
      bodies[i].vz -= dz * bodies[j].mass * mag;
      bodies[j].vx += dx * bodies[i].mass * mag;
      bodies[j].vy += dy * bodies[i].mass * mag;
      bodies[j].vz += dz * bodies[i].mass * mag;
    }
  for (int i = 0; i < BODIES; ++i) {
    bodies[i].x += dt * bodies[i].vx;
    bodies[i].y += dt * bodies[i].vy;
    bodies[i].z += dt * bodies[i].vz;
  }
}

int main(void) {
  for (int i = 0; i < N; ++i)
    for (int j = 0; j < N; ++j) {
      A[i][j] = (double)((i * 7 + j * 3) % 11) / 10.0;
      B[i][j] = (double)((i * 5 + j * 13) % 17) / 17.0 - 0.4;
    }
  for (int i = 0; i < BODIES; ++i) {
    bodies[i] = (struct body){(double)i, (double)(i * i) * 0.5, -(double)i * 0.25,
                              0.01 * i, -0.02 * i, 0.005, 1.0 + i * 0.1};
  }
  uint64_t checksum = 0;
  float f = 1.0f;
  for (unsigned it = 0; it < FPBENCH_ITERATIONS; ++it) {
    matmul();
    nbody_step(0.001);
    f = f * 1.0001f + (float)(it & 7) * 0.5f;
    if (f > 1e6f) f = sqrt_s(f);
    checksum = checksum * 31 + bits_of(C[it % N][(it * 3) % N]) + (uint64_t)(int64_t)(bodies[it % BODIES].x * 1e6);
  }
  checksum ^= bits_of((double)f);
  printf("fpbench: %u iterations, checksum %lx, x0 %lx\n", (unsigned)FPBENCH_ITERATIONS,
         checksum, bits_of(bodies[0].x));
  printf("fpbench: PASS\n");
  return 0;
}
