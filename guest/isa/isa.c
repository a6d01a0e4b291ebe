// isa: RV64IMAC self-check suite. Every check runs the instruction under test in inline
// assembly (so the compiler cannot fold it) and compares with a constant worked out from
// the ISA manual. Each check prints "ok NAME" or "FAIL NAME got X want Y"; the guest
// passes only if all do.
#include "guest.h"

// The 32-bit encodings are forced with .option norvc so each base instruction is really
// executed in its 4-byte form; the compressed forms have their own section below.
#define ASM32(body) ".option push\n.option norvc\n" body "\n.option pop\n"

#define R_OP(op, a, b)                                                                      \
  ({                                                                                        \
    uint64_t r_;                                                                            \
    __asm__ volatile(ASM32(op " %0, %1, %2") : "=r"(r_) : "r"((uint64_t)(a)), "r"((uint64_t)(b))); \
    r_;                                                                                     \
  })
#define I_OP(op, a, imm)                                                           \
  ({                                                                               \
    uint64_t r_;                                                                   \
    __asm__ volatile(ASM32(op " %0, %1, %2") : "=r"(r_) : "r"((uint64_t)(a)), "i"(imm)); \
    r_;                                                                            \
  })

#define CHECK(name, got, want) check_u64(name, (uint64_t)(got), (uint64_t)(want))

static const uint64_t kIntMin = 0x8000000000000000UL;
static const uint64_t kAllOnes = 0xffffffffffffffffUL;

static void test_alu(void) {
  CHECK("add", R_OP("add", 0x7fffffffffffffffUL, 1), kIntMin);
  CHECK("add-wrap", R_OP("add", kAllOnes, 2), 1);
  CHECK("sub", R_OP("sub", 0, 1), kAllOnes);
  CHECK("sub-intmin", R_OP("sub", kIntMin, 1), 0x7fffffffffffffffUL);
  CHECK("sll", R_OP("sll", 1, 63), kIntMin);
  CHECK("sll-masks-shamt", R_OP("sll", 1, 64 + 4), 16);  // only rs2[5:0] counts
  CHECK("srl-63", R_OP("srl", kIntMin, 63), 1);
  CHECK("sra-63", R_OP("sra", kIntMin, 63), kAllOnes);
  CHECK("sra-31", R_OP("sra", 0xffffffff00000000UL, 31), 0xfffffffffffffffeUL);
  CHECK("srl-31", R_OP("srl", 0xffffffff00000000UL, 31), 0x1fffffffeUL);
  CHECK("slt-neg", R_OP("slt", kAllOnes, 0), 1);
  CHECK("slt-pos", R_OP("slt", 0, kAllOnes), 0);
  CHECK("sltu-neg", R_OP("sltu", kAllOnes, 0), 0);
  CHECK("sltu-pos", R_OP("sltu", 0, kAllOnes), 1);
  CHECK("xor", R_OP("xor", 0xff00ff00ff00ff00UL, 0x0ff00ff00ff00ff0UL), 0xf0f0f0f0f0f0f0f0UL);
  CHECK("or", R_OP("or", 0xff00ff00ff00ff00UL, 0x0ff00ff00ff00ff0UL), 0xfff0fff0fff0fff0UL);
  CHECK("and", R_OP("and", 0xff00ff00ff00ff00UL, 0x0ff00ff00ff00ff0UL), 0x0f000f000f000f00UL);

  CHECK("addi-neg", I_OP("addi", 0, -1), kAllOnes);
  CHECK("addi-max", I_OP("addi", 0, 2047), 2047);
  CHECK("addi-min", I_OP("addi", 0, -2048), (uint64_t)-2048);
  CHECK("slti", I_OP("slti", (uint64_t)-5, -4), 1);
  CHECK("slti-false", I_OP("slti", (uint64_t)-3, -4), 0);
  CHECK("sltiu-signext-imm", I_OP("sltiu", 5, -1), 1);  // imm sign-extends to all ones
  CHECK("sltiu-zero", I_OP("sltiu", 0, 1), 1);          // seqz
  CHECK("xori-not", I_OP("xori", 0x1234, -1), ~0x1234UL);
  CHECK("ori", I_OP("ori", 0x1200, 0x34), 0x1234);
  CHECK("andi-signext-imm", I_OP("andi", 0xffffffffffffffffUL, -16), 0xfffffffffffffff0UL);
  CHECK("slli-63", I_OP("slli", 1, 63), kIntMin);
  CHECK("slli-31", I_OP("slli", 3, 31), 0x180000000UL);
  CHECK("srli-63", I_OP("srli", kAllOnes, 63), 1);
  CHECK("srli-31", I_OP("srli", kAllOnes, 31), 0x1ffffffffUL);
  CHECK("srai-63", I_OP("srai", 0x8000000000001234UL, 63), kAllOnes);
  CHECK("srai-31", I_OP("srai", 0x8000000000000000UL, 31), 0xffffffff00000000UL);

  // W forms: operate on the low 32 bits, sign-extend the 32-bit result.
  CHECK("addw-overflow", R_OP("addw", 0x7fffffff, 1), 0xffffffff80000000UL);
  CHECK("addw-ignores-high", R_OP("addw", 0x1234567800000001UL, 0xabcdef0000000001UL), 2);
  CHECK("subw", R_OP("subw", 0, 1), kAllOnes);
  CHECK("subw-positive", R_OP("subw", 0x80000000UL, 1), 0x7fffffff);
  CHECK("sllw-31", R_OP("sllw", 1, 31), 0xffffffff80000000UL);
  CHECK("sllw-masks-shamt", R_OP("sllw", 1, 32 + 3), 8);  // only rs2[4:0] counts
  CHECK("srlw-31", R_OP("srlw", 0xffffffff80000000UL, 31), 1);
  CHECK("srlw-0-signext", R_OP("srlw", 0x80000000UL, 0), 0xffffffff80000000UL);
  CHECK("sraw-31", R_OP("sraw", 0x80000000UL, 31), kAllOnes);
  CHECK("sraw-4", R_OP("sraw", 0x0000000080000000UL, 4), 0xfffffffff8000000UL);
  CHECK("addiw-signext", I_OP("addiw", 0x7fffffff, 1), 0xffffffff80000000UL);
  CHECK("addiw-sextw", I_OP("addiw", 0x00000001ffffffffUL, 0), kAllOnes);
  CHECK("slliw-31", I_OP("slliw", 1, 31), 0xffffffff80000000UL);
  CHECK("srliw-31", I_OP("srliw", 0xffffffffffffffffUL, 31), 1);
  CHECK("srliw-1", I_OP("srliw", 0xffffffffffffffffUL, 1), 0x7fffffff);
  CHECK("sraiw-31", I_OP("sraiw", 0x80000000UL, 31), kAllOnes);
  CHECK("sraiw-0-signext", I_OP("sraiw", 0x1ffffffffUL, 0), kAllOnes);
}

static void test_lui_auipc(void) {
  uint64_t r;
  __asm__ volatile(ASM32("lui %0, 0x80000") : "=r"(r));
  CHECK("lui-signext", r, 0xffffffff80000000UL);
  __asm__ volatile(ASM32("lui %0, 0x7ffff") : "=r"(r));
  CHECK("lui-positive", r, 0x7ffff000UL);
  uint64_t pc_auipc, pc_label;
  __asm__ volatile(ASM32("1: auipc %0, 0\n la %1, 1b") : "=r"(pc_auipc), "=r"(pc_label));
  CHECK("auipc-0", pc_auipc, pc_label);
  __asm__ volatile(ASM32("1: auipc %0, 0xfffff\n la %1, 1b") : "=r"(r), "=r"(pc_label));
  CHECK("auipc-negative", r, pc_label - 0x1000);
}

static uint64_t mem_buffer[4] __attribute__((aligned(16)));

#define LOAD(op, addr)                                                             \
  ({                                                                               \
    uint64_t r_;                                                                   \
    __asm__ volatile(ASM32(op " %0, 0(%1)") : "=r"(r_) : "r"(addr) : "memory"); \
    r_;                                                                            \
  })
#define STORE(op, addr, value) \
  __asm__ volatile(ASM32(op " %1, 0(%0)") ::"r"(addr), "r"((uint64_t)(value)) : "memory")

static void test_loads_stores(void) {
  volatile uint8_t *b = (volatile uint8_t *)mem_buffer;
  mem_buffer[0] = 0x8182838485868788UL;  // little-endian: b[0] = 0x88 ... b[7] = 0x81
  mem_buffer[1] = 0x0102030405060708UL;
  CHECK("lb-signext", LOAD("lb", b), 0xffffffffffffff88UL);
  CHECK("lbu-zeroext", LOAD("lbu", b), 0x88);
  CHECK("lb-positive", LOAD("lb", b + 8), 0x08);
  CHECK("lh-signext", LOAD("lh", b + 2), 0xffffffffffff8586UL);
  CHECK("lhu-zeroext", LOAD("lhu", b + 2), 0x8586);
  CHECK("lw-signext", LOAD("lw", b + 4), 0xffffffff81828384UL);
  CHECK("lwu-zeroext", LOAD("lwu", b + 4), 0x81828384UL);
  CHECK("lw-positive", LOAD("lw", b + 8), 0x05060708);
  CHECK("ld", LOAD("ld", b), 0x8182838485868788UL);
  {
    uint64_t r;
    __asm__ volatile(ASM32("ld %0, -8(%1)") : "=r"(r) : "r"(b + 16) : "memory");
    CHECK("ld-negative-offset", r, 0x0102030405060708UL);
  }

  mem_buffer[2] = 0;
  volatile uint8_t *s = b + 16;
  STORE("sb", s + 1, 0x12345678abUL);  // only the low byte is stored
  CHECK("sb", mem_buffer[2], 0xab00);
  STORE("sh", s + 2, 0xffffcdefUL);
  CHECK("sh", mem_buffer[2], 0xcdefab00UL);
  STORE("sw", s + 4, 0x1122334455667788UL);
  CHECK("sw", mem_buffer[2], 0x55667788cdefab00UL);
  STORE("sd", s, 0xfedcba9876543210UL);
  CHECK("sd", mem_buffer[2], 0xfedcba9876543210UL);
  {
    uint64_t p = (uint64_t)(uintptr_t)s;  // becomes the loaded value
    __asm__ volatile(ASM32("sd %1, 8(%0)\n ld %0, 8(%0)") : "+r"(p) : "r"(0x5aUL) : "memory");
    CHECK("sd-ld-offset", p, 0x5a);
  }
}

// Runs a branch and reports 1 if taken.
#define BRANCH(op, a, b)                                                              \
  ({                                                                                  \
    uint64_t t_;                                                                      \
    __asm__ volatile(ASM32("li %0, 1\n " op " %1, %2, 1f\n li %0, 0\n1:")             \
                     : "=&r"(t_) : "r"((uint64_t)(a)), "r"((uint64_t)(b)));           \
    t_;                                                                               \
  })

static void test_branches(void) {
  CHECK("beq-taken", BRANCH("beq", 5, 5), 1);
  CHECK("beq-not", BRANCH("beq", 5, 6), 0);
  CHECK("bne-taken", BRANCH("bne", 5, 6), 1);
  CHECK("bne-not", BRANCH("bne", 5, 5), 0);
  CHECK("blt-signed", BRANCH("blt", kAllOnes, 0), 1);
  CHECK("blt-not", BRANCH("blt", 0, kAllOnes), 0);
  CHECK("blt-equal", BRANCH("blt", 7, 7), 0);
  CHECK("bge-equal", BRANCH("bge", 7, 7), 1);
  CHECK("bge-signed", BRANCH("bge", 0, kIntMin), 1);
  CHECK("bge-not", BRANCH("bge", kIntMin, 0), 0);
  CHECK("bltu-unsigned", BRANCH("bltu", 0, kAllOnes), 1);
  CHECK("bltu-not", BRANCH("bltu", kAllOnes, 0), 0);
  CHECK("bgeu-unsigned", BRANCH("bgeu", kAllOnes, 0), 1);
  CHECK("bgeu-not", BRANCH("bgeu", 0, kIntMin), 0);
  CHECK("bgeu-equal", BRANCH("bgeu", kIntMin, kIntMin), 1);
  // A backward branch: a 3-iteration countdown loop.
  uint64_t n = 3, iterations = 0;
  __asm__ volatile(ASM32("1: addi %1, %1, 1\n addi %0, %0, -1\n bnez %0, 1b")
                   : "+r"(n), "+r"(iterations));
  CHECK("branch-backward-loop", iterations, 3);
}

static void test_jumps(void) {
  uint64_t link, target, marker;
  // JAL: rd gets pc+4, execution continues at the label.
  __asm__ volatile(ASM32("li %2, 0\n jal %0, 1f\n li %2, 1\n1: la %1, 1b")
                   : "=&r"(link), "=&r"(target), "=&r"(marker));
  CHECK("jal-skips", marker, 0);
  CHECK("jal-link", target - link, 4);  // link = address of "li %2,1" = label - 4
  // JALR with an odd target: bit 0 of the sum is cleared.
  __asm__ volatile(ASM32("la %1, 2f\n addi %1, %1, 1\n li %2, 0\n jalr %0, 0(%1)\n li %2, 1\n2:")
                   : "=&r"(link), "=&r"(target), "=&r"(marker));
  CHECK("jalr-odd-target", marker, 0);
  CHECK("jalr-link", (target - 1) - link, 4);
  // JALR with a non-zero offset and rd == rs1 (the link must not corrupt the target).
  __asm__ volatile(ASM32("la %0, 3f\n addi %0, %0, -8\n li %1, 0\n jalr %0, 8(%0)\n li %1, 1\n3:")
                   : "=&r"(link), "=&r"(marker));
  CHECK("jalr-rd-eq-rs1", marker, 0);
}

#define MUL(op, a, b) R_OP(op, a, b)

static void test_muldiv(void) {
  CHECK("mul", MUL("mul", 0x100000001UL, 0x100000001UL), 0x200000001UL);
  CHECK("mul-neg", MUL("mul", kAllOnes, 5), (uint64_t)-5);
  CHECK("mulh-neg-neg", MUL("mulh", kAllOnes, kAllOnes), 0);            // (-1)*(-1) = 1
  CHECK("mulh-intmin", MUL("mulh", kIntMin, kIntMin), 0x4000000000000000UL);
  CHECK("mulh-neg-pos", MUL("mulh", kAllOnes, 2), kAllOnes);            // -2: high all ones
  CHECK("mulhsu-neg", MUL("mulhsu", kAllOnes, kAllOnes), kAllOnes);     // -1 * (2^64-1)
  CHECK("mulhsu-pos", MUL("mulhsu", 2, kAllOnes), 1);
  CHECK("mulhu", MUL("mulhu", kAllOnes, kAllOnes), 0xfffffffffffffffeUL);
  CHECK("mulhu-small", MUL("mulhu", 3, 5), 0);
  CHECK("mulw-signext", MUL("mulw", 0x10000, 0x8000), 0xffffffff80000000UL);
  CHECK("mulw-ignores-high", MUL("mulw", 0xffffffff00000003UL, 0x1234567800000005UL), 15);

  CHECK("div", R_OP("div", (uint64_t)-7, 2), (uint64_t)-3);  // rounds toward zero
  CHECK("rem", R_OP("rem", (uint64_t)-7, 2), (uint64_t)-1);  // sign of the dividend
  CHECK("divu", R_OP("divu", kAllOnes, 2), 0x7fffffffffffffffUL);
  CHECK("remu", R_OP("remu", kAllOnes, 10), 5);
  CHECK("div-by-zero", R_OP("div", 42, 0), kAllOnes);
  CHECK("divu-by-zero", R_OP("divu", 42, 0), kAllOnes);
  CHECK("rem-by-zero", R_OP("rem", (uint64_t)-42, 0), (uint64_t)-42);
  CHECK("remu-by-zero", R_OP("remu", 42, 0), 42);
  CHECK("div-overflow", R_OP("div", kIntMin, kAllOnes), kIntMin);
  CHECK("rem-overflow", R_OP("rem", kIntMin, kAllOnes), 0);

  CHECK("divw", R_OP("divw", 0xffffffff00000064UL, (uint64_t)-7), (uint64_t)-14);
  CHECK("divuw-signext", R_OP("divuw", 0xffffffffUL, 1), kAllOnes);
  CHECK("divuw", R_OP("divuw", 0x80000000UL, 2), 0x40000000UL);
  CHECK("remw", R_OP("remw", (uint64_t)-7, 2), (uint64_t)-1);
  CHECK("remuw-signext", R_OP("remuw", 0xfffffffeUL, 0xffffffffUL), 0xfffffffffffffffeUL);
  CHECK("divw-by-zero", R_OP("divw", 5, 0), kAllOnes);
  CHECK("divuw-by-zero", R_OP("divuw", 5, 0), kAllOnes);
  CHECK("remw-by-zero", R_OP("remw", 0x1234567880000000UL, 0), 0xffffffff80000000UL);
  CHECK("remuw-by-zero", R_OP("remuw", 0x123456787fffffffUL, 0), 0x7fffffff);
  CHECK("divw-overflow", R_OP("divw", 0x80000000UL, kAllOnes), 0xffffffff80000000UL);
  CHECK("remw-overflow", R_OP("remw", 0x80000000UL, kAllOnes), 0);
}

// ---- compressed instructions, written as explicit c.* mnemonics ----
// Compressed register fields reach only x8..x15, so operands are moved into a0/a1 inside
// the asm block itself (register variables are not reliable across calls).
#define RVC(body) ".option push\n.option rvc\n" body "\n.option pop\n"
#define C_OP1(insn, x)                                                          \
  ({                                                                            \
    uint64_t r_;                                                                \
    __asm__ volatile(RVC("mv a0, %1\n " insn "\n mv %0, a0")                    \
                     : "=r"(r_) : "r"((uint64_t)(x)) : "a0", "memory");         \
    r_;                                                                         \
  })
#define C_OP2(insn, x, y)                                                               \
  ({                                                                                    \
    uint64_t r_;                                                                        \
    __asm__ volatile(RVC("mv a0, %1\n mv a1, %2\n " insn "\n mv %0, a0")                \
                     : "=r"(r_) : "r"((uint64_t)(x)), "r"((uint64_t)(y)) : "a0", "a1", "memory"); \
    r_;                                                                                 \
  })

static void test_compressed(void) {
  CHECK("c.li", C_OP1("c.li a0, -32", 0), (uint64_t)-32);
  CHECK("c.lui-signext", C_OP1("c.lui a0, 0xfffe0", 0), 0xfffffffffffe0000UL);
  CHECK("c.lui", C_OP1("c.lui a0, 1", 0), 0x1000);
  CHECK("c.addi", C_OP1("c.addi a0, -11", 10), kAllOnes);
  CHECK("c.addiw-signext", C_OP1("c.addiw a0, 1", 0x7fffffff), 0xffffffff80000000UL);
  CHECK("c.addiw-sextw", C_OP1("c.addiw a0, 0", 0x1ffffffffUL), kAllOnes);
  {
    uint64_t before, after;
    __asm__ volatile(RVC("mv %0, sp\n c.addi16sp sp, -64\n mv %1, sp\n c.addi16sp sp, 64")
                     : "=&r"(before), "=&r"(after));
    CHECK("c.addi16sp", before - after, 64);
    __asm__ volatile(RVC("c.addi4spn a0, sp, 24\n mv %0, a0\n mv %1, sp")
                     : "=r"(after), "=r"(before) : : "a0");
    CHECK("c.addi4spn", after - before, 24);
  }
  CHECK("c.slli-63", C_OP1("c.slli a0, 63", 1), kIntMin);
  CHECK("c.srli-63", C_OP1("c.srli a0, 63", kIntMin), 1);
  CHECK("c.srai-63", C_OP1("c.srai a0, 63", kIntMin), kAllOnes);
  CHECK("c.srai-31", C_OP1("c.srai a0, 31", kIntMin), 0xffffffff00000000UL);
  CHECK("c.andi-signext", C_OP1("c.andi a0, -16", 0xfff), 0xff0);
  CHECK("c.mv", C_OP2("c.mv a0, a1", 0, 0x1234), 0x1234);
  CHECK("c.add", C_OP2("c.add a0, a1", 5, 7), 12);
  CHECK("c.sub", C_OP2("c.sub a0, a1", 5, 7), (uint64_t)-2);
  CHECK("c.xor", C_OP2("c.xor a0, a1", 0xff00, 0x0ff0), 0xf0f0);
  CHECK("c.or", C_OP2("c.or a0, a1", 0xff00, 0x0ff0), 0xfff0);
  CHECK("c.and", C_OP2("c.and a0, a1", 0xff00, 0x0ff0), 0x0f00);
  CHECK("c.addw-signext", C_OP2("c.addw a0, a1", 0x7fffffff, 1), 0xffffffff80000000UL);
  CHECK("c.subw", C_OP2("c.subw a0, a1", 0, 1), kAllOnes);
  CHECK("c.subw-ignores-high", C_OP2("c.subw a0, a1", 0x500000003UL, 0x700000001UL), 2);

  // Loads and stores, register-based and sp-based.
  mem_buffer[0] = 0;
  mem_buffer[1] = 0;
  const uint64_t pattern = 0x80000001fedcba98UL;
  __asm__ volatile(RVC("mv a0, %0\n mv a1, %1\n c.sd a1, 8(a0)\n c.sw a1, 0(a0)")
                   ::"r"(mem_buffer), "r"(pattern) : "a0", "a1", "memory");
  CHECK("c.sd", mem_buffer[1], pattern);
  CHECK("c.sw", mem_buffer[0], 0xfedcba98UL);
  CHECK("c.lw-signext", C_OP1("c.lw a0, 0(a0)", mem_buffer), 0xfffffffffedcba98UL);
  CHECK("c.ld", C_OP1("c.ld a0, 8(a0)", mem_buffer), pattern);
  {
    uint64_t d, w;
    __asm__ volatile(RVC("addi sp, sp, -32\n"
                         " c.sdsp %2, 16(sp)\n c.swsp %2, 8(sp)\n"
                         " c.ldsp %0, 16(sp)\n c.lwsp %1, 8(sp)\n"
                         " addi sp, sp, 32")
                     : "=&r"(d), "=&r"(w) : "r"(0x12345678cafef00dUL) : "memory");
    CHECK("c.sdsp-ldsp", d, 0x12345678cafef00dUL);
    CHECK("c.swsp-lwsp-signext", w, 0xffffffffcafef00dUL);
  }

  // Control flow: each block leaves 1 in the marker if the branch went the expected way.
  uint64_t marker, link, target;
  __asm__ volatile(RVC("li %0, 1\n c.j 1f\n li %0, 0\n1:") : "=&r"(marker));
  CHECK("c.j", marker, 1);
  __asm__ volatile(RVC("li a0, 0\n li %0, 1\n c.beqz a0, 1f\n li %0, 0\n1:") : "=&r"(marker) : : "a0");
  CHECK("c.beqz-taken", marker, 1);
  __asm__ volatile(RVC("li a0, 3\n li %0, 0\n c.beqz a0, 1f\n li %0, 1\n1:") : "=&r"(marker) : : "a0");
  CHECK("c.beqz-not-taken", marker, 1);
  __asm__ volatile(RVC("li a0, -1\n li %0, 1\n c.bnez a0, 1f\n li %0, 0\n1:") : "=&r"(marker) : : "a0");
  CHECK("c.bnez-taken", marker, 1);
  __asm__ volatile(RVC("li a0, 0\n li %0, 0\n c.bnez a0, 1f\n li %0, 1\n1:") : "=&r"(marker) : : "a0");
  CHECK("c.bnez-not-taken", marker, 1);
  // A backward c.bnez loop.
  __asm__ volatile(RVC("li a0, 4\n li %0, 0\n1: addi %0, %0, 1\n c.addi a0, -1\n c.bnez a0, 1b")
                   : "=&r"(marker) : : "a0");
  CHECK("c.bnez-backward-loop", marker, 4);
  __asm__ volatile(RVC("la %1, 1f\n li %0, 1\n c.jr %1\n li %0, 0\n1:") : "=&r"(marker), "=&r"(target));
  CHECK("c.jr", marker, 1);
  // c.jalr links ra = address of the next (2-byte) instruction.
  __asm__ volatile(RVC("la t0, 1f\n c.jalr t0\n2: c.j 3f\n1: mv %0, ra\n la %1, 2b\n c.jr ra\n3:")
                   : "=&r"(link), "=&r"(target) : : "t0", "ra", "memory");
  CHECK("c.jalr-link", link, target);
  CHECK("c.nop", C_OP1("c.nop\n c.addi a0, 1\n c.nop", 41), 42);
}

// ---- atomics ----
static uint64_t amo_cell[2] __attribute__((aligned(16)));

#define AMO(op, addr, value)                                                                    \
  ({                                                                                            \
    uint64_t old_;                                                                              \
    __asm__ volatile(op " %0, %2, (%1)" : "=r"(old_) : "r"(addr), "r"((uint64_t)(value)) : "memory"); \
    old_;                                                                                       \
  })

static void test_amo(void) {
  volatile uint64_t *d = &amo_cell[0];
  volatile uint32_t *w = (volatile uint32_t *)&amo_cell[1];
  uint64_t old;

#define AMO_D_CASE(name, op, initial, operand, want_mem)          \
  *d = (initial);                                                 \
  old = AMO(op, d, operand);                                      \
  CHECK(name "-old", old, initial);                               \
  CHECK(name "-mem", *d, want_mem);
  AMO_D_CASE("amoswap.d", "amoswap.d", 0x1111111111111111UL, 0x2222222222222222UL, 0x2222222222222222UL);
  AMO_D_CASE("amoadd.d", "amoadd.d", kAllOnes, 2, 1);
  AMO_D_CASE("amoxor.d", "amoxor.d", 0xff00UL, 0x0ff0UL, 0xf0f0UL);
  AMO_D_CASE("amoand.d", "amoand.d", 0xff00UL, 0x0ff0UL, 0x0f00UL);
  AMO_D_CASE("amoor.d", "amoor.d", 0xff00UL, 0x0ff0UL, 0xfff0UL);
  AMO_D_CASE("amomin.d", "amomin.d", 5, kAllOnes, kAllOnes);
  AMO_D_CASE("amomax.d", "amomax.d", kAllOnes, 5, 5);
  AMO_D_CASE("amominu.d", "amominu.d", 5, kAllOnes, 5);
  AMO_D_CASE("amomaxu.d", "amomaxu.d", 5, kAllOnes, kAllOnes);
#undef AMO_D_CASE

  // .W: the old value comes back sign-extended; comparisons are on 32-bit values. The
  // neighbouring word must stay untouched.
#define AMO_W_CASE(name, op, initial, operand, want_old, want_mem) \
  w[0] = (initial);                                                \
  w[1] = 0xa5a5a5a5u;                                              \
  old = AMO(op, w, operand);                                       \
  CHECK(name "-old", old, want_old);                               \
  CHECK(name "-mem", w[0], want_mem);                              \
  CHECK(name "-neighbour", w[1], 0xa5a5a5a5u);
  AMO_W_CASE("amoswap.w", "amoswap.w", 0x80000000u, 0x1234567812345678UL, 0xffffffff80000000UL, 0x12345678u);
  AMO_W_CASE("amoadd.w", "amoadd.w", 0x7fffffffu, 1, 0x7fffffff, 0x80000000u);
  AMO_W_CASE("amoxor.w", "amoxor.w", 0xffff0000u, 0x0000ffffUL, 0xffffffffffff0000UL, 0xffffffffu);
  AMO_W_CASE("amoand.w", "amoand.w", 0xf0f0f0f0u, 0xff00ff00UL, 0xfffffffff0f0f0f0UL, 0xf000f000u);
  AMO_W_CASE("amoor.w", "amoor.w", 0x0f0f0000u, 0xf0f00000UL, 0x0f0f0000, 0xffff0000u);
  // -1 (0xffffffff) vs 1: signed min is -1, unsigned min is 1.
  AMO_W_CASE("amomin.w", "amomin.w", 1, 0xffffffffUL, 1, 0xffffffffu);
  AMO_W_CASE("amomax.w", "amomax.w", 0xffffffffu, 1, kAllOnes, 1);
  AMO_W_CASE("amominu.w", "amominu.w", 0xffffffffu, 1, kAllOnes, 1);
  AMO_W_CASE("amomaxu.w", "amomaxu.w", 1, 0xffffffffUL, 1, 0xffffffffu);
  // The operand's upper 32 bits are ignored by .W comparisons.
  AMO_W_CASE("amomin.w-ignores-high", "amomin.w", 5, 0x0000000100000002UL, 5, 2);
#undef AMO_W_CASE

  // The .aqrl orderings decode to the same operations.
  *d = 40;
  old = AMO("amoadd.d.aqrl", d, 2);
  CHECK("amoadd.d.aqrl", *d, 42);
  // rd = x0 discards the old value but still updates memory.
  *d = 7;
  __asm__ volatile("amoadd.d zero, %1, (%0)" ::"r"(d), "r"(3UL) : "memory");
  CHECK("amoadd.d-rd-zero", *d, 10);
}

static void test_lr_sc(void) {
  volatile uint64_t *d = &amo_cell[0];
  volatile uint32_t *w = (volatile uint32_t *)&amo_cell[1];
  uint64_t loaded, fail;

  *d = 100;
  __asm__ volatile("lr.d %0, (%2)\n sc.d %1, %3, (%2)"
                   : "=&r"(loaded), "=&r"(fail) : "r"(d), "r"(101UL) : "memory");
  CHECK("lr.d", loaded, 100);
  CHECK("sc.d-success", fail, 0);
  CHECK("sc.d-stored", *d, 101);
  // The successful SC used up the reservation: a second SC must fail and store nothing.
  __asm__ volatile("sc.d %0, %2, (%1)" : "=&r"(fail) : "r"(d), "r"(999UL) : "memory");
  CHECK("sc.d-no-reservation-fails", fail != 0, 1);
  CHECK("sc.d-no-reservation-no-store", *d, 101);

  w[0] = 0x80000000u;
  __asm__ volatile("lr.w %0, (%2)\n sc.w %1, %3, (%2)"
                   : "=&r"(loaded), "=&r"(fail) : "r"(w), "r"(0x7fffffffUL) : "memory");
  CHECK("lr.w-signext", loaded, 0xffffffff80000000UL);
  CHECK("sc.w-success", fail, 0);
  CHECK("sc.w-stored", w[0], 0x7fffffffu);
  __asm__ volatile("sc.w %0, %2, (%1)" : "=&r"(fail) : "r"(w), "r"(1UL) : "memory");
  CHECK("sc.w-no-reservation-fails", fail != 0, 1);
  CHECK("sc.w-no-reservation-no-store", w[0], 0x7fffffffu);

  // A CAS loop built from LR/SC, the way compilers emit __atomic_compare_exchange.
  *d = 5;
  uint64_t expected = 5, desired = 6, ok;
  __asm__ volatile(
      "1: lr.d.aqrl %0, (%2)\n"
      "   bne %0, %3, 2f\n"
      "   sc.d.rl %1, %4, (%2)\n"
      "   bnez %1, 1b\n"
      "2:"
      : "=&r"(loaded), "=&r"(ok) : "r"(d), "r"(expected), "r"(desired) : "memory");
  CHECK("lr-sc-cas", *d, 6);
}

static void test_csr(void) {
  uint64_t old;
  csr_write(mscratch, 0x1234);
  __asm__ volatile("csrrw %0, mscratch, %1" : "=r"(old) : "r"(0xf0f0UL));
  CHECK("csrrw-old", old, 0x1234);
  CHECK("csrrw-new", csr_read(mscratch), 0xf0f0);
  __asm__ volatile("csrrs %0, mscratch, %1" : "=r"(old) : "r"(0x0f0fUL));
  CHECK("csrrs-old", old, 0xf0f0);
  CHECK("csrrs-new", csr_read(mscratch), 0xffff);
  __asm__ volatile("csrrc %0, mscratch, %1" : "=r"(old) : "r"(0x00ffUL));
  CHECK("csrrc-old", old, 0xffff);
  CHECK("csrrc-new", csr_read(mscratch), 0xff00);
  __asm__ volatile("csrrwi %0, mscratch, 31" : "=r"(old));
  CHECK("csrrwi-old", old, 0xff00);
  CHECK("csrrwi-new", csr_read(mscratch), 31);
  __asm__ volatile("csrrci %0, mscratch, 5" : "=r"(old));
  CHECK("csrrci-old", old, 31);
  CHECK("csrrci-new", csr_read(mscratch), 26);
  __asm__ volatile("csrrsi %0, mscratch, 1" : "=r"(old));
  CHECK("csrrsi-old", old, 26);
  CHECK("csrrsi-new", csr_read(mscratch), 27);
  // csrrs with rs1 = x0 reads without writing; a full 64-bit value survives.
  csr_write(mscratch, 0xdeadbeefcafef00dUL);
  __asm__ volatile("csrrs %0, mscratch, zero" : "=r"(old));
  CHECK("csrr-64bit", old, 0xdeadbeefcafef00dUL);
  // misa: RV64 (MXL = 2) with I, M, A, C present.
  uint64_t misa = csr_read(misa);
  CHECK("misa-mxl", misa >> 62, 2);
  const uint64_t imac = (1UL << ('i' - 'a')) | (1UL << ('m' - 'a')) | (1UL << ('a' - 'a')) |
                        (1UL << ('c' - 'a'));
  CHECK("misa-imac", misa & imac, imac);
  CHECK("mhartid", csr_read(mhartid), 0);
}

// Self-modifying code: a tiny function in a data buffer, rewritten between calls. The
// second call must see the new instruction after fence.i, even if the first was cached.
static uint32_t code_buffer[4] __attribute__((aligned(16)));

static uint32_t encode_li_a0(int32_t imm) {  // addi a0, zero, imm
  return ((uint32_t)imm << 20) | (10u << 7) | 0x13u;
}
static const uint32_t kRet = 0x00008067u;  // jalr zero, 0(ra)

static void test_fence_i(void) {
  typedef uint64_t (*fn_t)(void);
  fn_t fn = (fn_t)(uintptr_t)code_buffer;
  code_buffer[0] = encode_li_a0(1);
  code_buffer[1] = kRet;
  __asm__ volatile("fence.i" ::: "memory");
  CHECK("fence.i-first", fn(), 1);
  code_buffer[0] = encode_li_a0(2);
  __asm__ volatile("fence.i" ::: "memory");
  CHECK("fence.i-rewritten", fn(), 2);
  // Rewrite twice more in a loop, as a JIT would.
  uint64_t sum = 0;
  for (int i = 3; i <= 5; i++) {
    code_buffer[0] = encode_li_a0(i * 100);
    __asm__ volatile("fence.i" ::: "memory");
    sum += fn();
  }
  CHECK("fence.i-loop", sum, 1200);
}

int main(void) {
  printf("isa: RV64IMAC self-check\n");
  test_alu();
  test_lui_auipc();
  test_loads_stores();
  test_branches();
  test_jumps();
  test_muldiv();
  test_compressed();
  test_amo();
  test_lr_sc();
  test_csr();
  test_fence_i();
  return check_summary("isa");
}
