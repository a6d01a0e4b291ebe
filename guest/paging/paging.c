// paging: Sv39 in S-mode. Identity 1 GiB superpages for RAM and MMIO, an alias 1 GiB
// superpage, a 2 MiB superpage and a table of 4 KiB pages with different permissions.
// Checks translation, load/store/instruction page faults (scause, stval, sepc),
// hardware-set A/D bits, SUM, MXR and a remap made visible by sfence.vma.
#include "guest.h"

#define PTE_V (1UL << 0)
#define PTE_R (1UL << 1)
#define PTE_W (1UL << 2)
#define PTE_X (1UL << 3)
#define PTE_U (1UL << 4)
#define PTE_A (1UL << 6)
#define PTE_D (1UL << 7)
#define PAGE_SIZE 4096UL
#define SATP_SV39 (8UL << 60)

static uint64_t pte_leaf(uint64_t pa, uint64_t flags) { return ((pa >> 12) << 10) | flags | PTE_V; }
static uint64_t pte_table(void *next) { return (((uint64_t)(uintptr_t)next >> 12) << 10) | PTE_V; }

static uint64_t root[512] __attribute__((aligned(4096)));
static uint64_t l1_table[512] __attribute__((aligned(4096)));
static uint64_t l0_table[512] __attribute__((aligned(4096)));
static uint8_t data_pages[6][4096] __attribute__((aligned(4096)));
static uint32_t code_page[1024] __attribute__((aligned(4096)));

// Virtual layout (all under root[1], VA 0x4000_0000..0x7fff_ffff).
#define VA_BASE 0x40000000UL
#define VA_PAGE(i) (VA_BASE + (i) * PAGE_SIZE)
#define PG_AD_TEST 0     // RW, A=0 D=0: hardware sets A on read, D on write
#define PG_READ_ONLY 1   // R: stores fault
#define PG_INVALID 2     // V=0: everything faults
#define PG_USER 3        // RWU: S may touch it only with SUM=1
#define PG_NO_EXEC 4     // RW: fetch faults
#define PG_EXEC_ONLY 5   // X: loads fault unless MXR=1
#define PG_REMAP 6       // moved from data page 4 to 5, seen after sfence.vma
#define PG_DIRTY_TEST 7  // RW, A=1 D=0: a store sets D
#define VA_2M 0x40200000UL     // l1_table[1]: 2 MiB superpage
#define PA_2M 0x80400000UL     // 2 MiB-aligned RAM past the image (see link.ld: image < 4M)
#define VA_ALIAS_1G 0xC0000000UL  // root[3]: 1 GiB superpage aliasing RAM at 0x8000_0000

struct observed {
  uint64_t cause, tval, epc;
  unsigned count;
};
static volatile struct observed seen;

void handle_s_trap(struct trap_frame *frame, uint64_t cause, uint64_t tval) {
  if (cause & CAUSE_INTERRUPT) {
    printf("FAIL unexpected interrupt 0x%lx\n", cause);
    guest_exit(0x7d);
  }
  seen.cause = cause;
  seen.tval = tval;
  seen.epc = frame->epc;
  seen.count++;
  if (cause == CAUSE_FETCH_PAGE_FAULT) {
    frame->epc = frame->regs[1];  // the faulting page was called: return to the caller
  } else {
    frame->epc += insn_length(frame->epc);
  }
}

// Memory the MMU or an alias mapping changes behind the compiler's back is read volatile.
static uint64_t peek(const void *p) { return *(const volatile uint64_t *)p; }
static uint64_t load(uint64_t va) { return *(volatile uint64_t *)va; }
static void store(uint64_t va, uint64_t v) { *(volatile uint64_t *)va = v; }

static void begin(void) { seen.count = 0; }

static void expect_fault(const char *name, uint64_t cause, uint64_t va) {
  printf("%s: %u fault(s) scause=%lu stval=0x%lx\n", name, seen.count, seen.cause, seen.tval);
  char label[64];
  unsigned n = 0;
  for (const char *p = name; *p && n < 50; p++) label[n++] = *p;
  label[n] = 0;
  check_u64(label, seen.count == 1 && seen.cause == cause && seen.tval == va, 1);
}

static void expect_no_fault(const char *name) {
  printf("%s: %u fault(s)\n", name, seen.count);
  check_u64(name, seen.count, 0);
}

static void build_tables(void) {
  const uint64_t kernel = PTE_R | PTE_W | PTE_X | PTE_A | PTE_D;
  root[0] = pte_leaf(0x0, PTE_R | PTE_W | PTE_A | PTE_D);  // MMIO: UART, CLINT, PLIC, finisher
  root[1] = pte_table(l1_table);
  root[2] = pte_leaf(RAM_BASE, kernel);                      // identity RAM
  root[3] = pte_leaf(RAM_BASE, PTE_R | PTE_W | PTE_A | PTE_D);  // alias of RAM
  l1_table[0] = pte_table(l0_table);
  l1_table[1] = pte_leaf(PA_2M, PTE_R | PTE_W | PTE_A | PTE_D);

  uint64_t pa[6];
  for (int i = 0; i < 6; i++) pa[i] = (uint64_t)(uintptr_t)data_pages[i];
  l0_table[PG_AD_TEST] = pte_leaf(pa[0], PTE_R | PTE_W);
  l0_table[PG_READ_ONLY] = pte_leaf(pa[1], PTE_R | PTE_A);
  l0_table[PG_INVALID] = 0;
  l0_table[PG_USER] = pte_leaf(pa[2], PTE_R | PTE_W | PTE_U | PTE_A | PTE_D);
  l0_table[PG_NO_EXEC] = pte_leaf(pa[3], PTE_R | PTE_W | PTE_A | PTE_D);
  l0_table[PG_EXEC_ONLY] = pte_leaf((uint64_t)(uintptr_t)code_page, PTE_X | PTE_A);
  l0_table[PG_REMAP] = pte_leaf(pa[4], PTE_R | PTE_W | PTE_A | PTE_D);
  l0_table[PG_DIRTY_TEST] = pte_leaf(pa[5], PTE_R | PTE_W | PTE_A);

  // Contents: each data page starts with a recognisable word.
  for (int i = 0; i < 6; i++) *(uint64_t *)data_pages[i] = 0x1000 + (uint64_t)i;
  // The code page: "li a0, 42; ret".
  code_page[0] = (42u << 20) | (10u << 7) | 0x13u;
  code_page[1] = 0x00008067u;
  // The no-exec page gets the same code, which must not run.
  uint32_t *ne = (uint32_t *)data_pages[3];
  ne[0] = code_page[0];
  ne[1] = code_page[1];
  __asm__ volatile("fence.i" ::: "memory");
}

static void s_main(void) {
  printf("now in S-mode\n");
  csr_write(satp, SATP_SV39 | ((uint64_t)(uintptr_t)root >> 12));
  __asm__ volatile("sfence.vma" ::: "memory");
  check_u64("satp-mode", csr_read(satp) >> 60, 8);
  printf("paging on\n");  // the UART is reached through root[0]

  // Translation through each kind of mapping.
  begin();
  check_u64("4k-read-only-page", load(VA_PAGE(PG_READ_ONLY)), 0x1001);
  static uint64_t marker = 0x5eed;
  uint64_t alias = (uint64_t)(uintptr_t)&marker - RAM_BASE + VA_ALIAS_1G;
  check_u64("1g-alias-read", load(alias), 0x5eed);
  store(alias, 0xa11a5);
  check_u64("1g-alias-write-visible", peek(&marker), 0xa11a5);
  store(VA_2M + 0x1238, 0x22222222);
  check_u64("2m-superpage-write", *(volatile uint64_t *)(PA_2M + 0x1238), 0x22222222);
  store(VA_2M + 0x1ffff8, 0x33);
  check_u64("2m-superpage-last-word", *(volatile uint64_t *)(PA_2M + 0x1ffff8), 0x33);
  expect_no_fault("mapped-accesses");

  // A/D bits, set by hardware.
  check_u64("ad-initially-clear", peek(&l0_table[PG_AD_TEST]) & (PTE_A | PTE_D), 0);
  begin();
  check_u64("ad-read", load(VA_PAGE(PG_AD_TEST)), 0x1000);
  check_u64("ad-read-sets-a", peek(&l0_table[PG_AD_TEST]) & (PTE_A | PTE_D), PTE_A);
  store(VA_PAGE(PG_AD_TEST) + 8, 1);
  check_u64("ad-write-sets-d", peek(&l0_table[PG_AD_TEST]) & (PTE_A | PTE_D), PTE_A | PTE_D);
  __asm__ volatile("sfence.vma" ::: "memory");
  store(VA_PAGE(PG_DIRTY_TEST) + 16, 2);
  check_u64("store-sets-d", peek(&l0_table[PG_DIRTY_TEST]) & PTE_D, PTE_D);
  expect_no_fault("ad-accesses");

  // Page faults.
  begin();
  store(VA_PAGE(PG_READ_ONLY) + 0x18, 1);
  expect_fault("store-to-read-only", CAUSE_STORE_PAGE_FAULT, VA_PAGE(PG_READ_ONLY) + 0x18);
  check_u64("read-only-unchanged", peek(&data_pages[1][0x18]), 0);
  begin();
  load(VA_PAGE(PG_INVALID) + 0x123 * 8);
  expect_fault("load-invalid", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(PG_INVALID) + 0x123 * 8);
  begin();
  store(VA_PAGE(PG_INVALID), 1);
  expect_fault("store-invalid", CAUSE_STORE_PAGE_FAULT, VA_PAGE(PG_INVALID));
  begin();
  load(0x8000000000UL);  // non-canonical for Sv39: bits 63..39 must equal bit 38
  expect_fault("load-non-canonical", CAUSE_LOAD_PAGE_FAULT, 0x8000000000UL);

  // Execute permission.
  typedef uint64_t (*fn_t)(void);
  begin();
  uint64_t r = ((fn_t)VA_PAGE(PG_EXEC_ONLY))();
  check_u64("exec-only-runs", r, 42);
  expect_no_fault("exec-only-fetch");
  begin();
  ((fn_t)VA_PAGE(PG_NO_EXEC))();
  expect_fault("fetch-no-exec", CAUSE_FETCH_PAGE_FAULT, VA_PAGE(PG_NO_EXEC));
  check_u64("fetch-fault-epc", seen.epc, VA_PAGE(PG_NO_EXEC));
  begin();
  ((fn_t)(VA_PAGE(PG_INVALID) + 0x40))();
  expect_fault("fetch-invalid", CAUSE_FETCH_PAGE_FAULT, VA_PAGE(PG_INVALID) + 0x40);

  // MXR: execute-only pages become readable.
  begin();
  load(VA_PAGE(PG_EXEC_ONLY));
  expect_fault("load-exec-only-mxr0", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(PG_EXEC_ONLY));
  csr_set(sstatus, MSTATUS_MXR);
  begin();
  check_u64("load-exec-only-mxr1", load(VA_PAGE(PG_EXEC_ONLY)) & 0xffffffff, code_page[0]);
  expect_no_fault("mxr1-no-fault");
  csr_clear(sstatus, MSTATUS_MXR);

  // SUM: S-mode may touch user pages only with SUM=1.
  begin();
  load(VA_PAGE(PG_USER));
  expect_fault("user-page-sum0-load", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(PG_USER));
  begin();
  store(VA_PAGE(PG_USER), 7);
  expect_fault("user-page-sum0-store", CAUSE_STORE_PAGE_FAULT, VA_PAGE(PG_USER));
  csr_set(sstatus, MSTATUS_SUM);
  begin();
  check_u64("user-page-sum1-load", load(VA_PAGE(PG_USER)), 0x1002);
  store(VA_PAGE(PG_USER) + 8, 9);
  check_u64("user-page-sum1-store", peek(&data_pages[2][8]), 9);
  expect_no_fault("sum1-no-fault");
  csr_clear(sstatus, MSTATUS_SUM);

  // Remap: the old translation may be cached until sfence.vma; after it, the new one.
  begin();
  check_u64("remap-before", load(VA_PAGE(PG_REMAP)), 0x1004);
  l0_table[PG_REMAP] = pte_leaf((uint64_t)(uintptr_t)data_pages[5], PTE_R | PTE_W | PTE_A | PTE_D);
  __asm__ volatile("sfence.vma %0, zero" ::"r"(VA_PAGE(PG_REMAP)) : "memory");
  check_u64("remap-after-sfence", load(VA_PAGE(PG_REMAP)), 0x1005);
  // Unmapping works the same way.
  l0_table[PG_REMAP] = 0;
  __asm__ volatile("sfence.vma" ::: "memory");
  load(VA_PAGE(PG_REMAP));
  expect_fault("unmapped-after-sfence", CAUSE_LOAD_PAGE_FAULT, VA_PAGE(PG_REMAP));

  csr_write(satp, 0);
  __asm__ volatile("sfence.vma" ::: "memory");
  printf("paging off\n");
  guest_exit(check_summary("paging"));
}

extern char __image_end[];

int main(void) {
  printf("paging: Sv39\n");
  check_u64("image-below-2m-superpage", (uint64_t)(uintptr_t)__image_end < PA_2M, 1);
  build_tables();
  pmp_allow_all();
  csr_write(medeleg, (1UL << CAUSE_FETCH_PAGE_FAULT) | (1UL << CAUSE_LOAD_PAGE_FAULT) |
                         (1UL << CAUSE_STORE_PAGE_FAULT));
  csr_write(stvec, (uint64_t)(uintptr_t)s_trap_entry);
  csr_clear(mstatus, MSTATUS_SUM | MSTATUS_MXR);
  enter_mode(1, s_main);
}
