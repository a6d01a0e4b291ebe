#pragma once
// Pre-decoded instructions. Every guest instruction is decoded once into a DecodedInsn
// (opcode enum + pre-extracted registers and immediate) and cached per physical code page;
// compressed instructions expand to the same internal ops as their 32-bit forms.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tandem::vmm {
struct TlbEntry;
}

namespace tandem::vmm::cpu {

// Register index that absorbs writes to x0 for instructions that must still execute
// (loads, jumps, atomics): the register file has 33 slots and slot 32 is never read.
inline constexpr uint8_t kSinkReg = 32;

// X-macro list of internal ops, so the enum and the dispatch table can never disagree.
// Block terminators (ops after which the run loop re-examines pc, budget and interrupts)
// are listed by is_block_terminator() below.
#define TANDEM_CPU_OPS(X)                                                                  \
  X(Undecoded) X(Exit) X(Continue) X(Illegal) X(Nop)                                                   \
  X(Li) X(Mv) X(Auipc)                                                                     \
  X(Addi) X(Slti) X(Sltiu) X(Xori) X(Ori) X(Andi) X(Slli) X(Srli) X(Srai)                  \
  X(Addiw) X(Slliw) X(Srliw) X(Sraiw)                                                      \
  X(Add) X(Sub) X(Sll) X(Slt) X(Sltu) X(Xor) X(Srl) X(Sra) X(Or) X(And)                    \
  X(Addw) X(Subw) X(Sllw) X(Srlw) X(Sraw)                                                  \
  X(Mul) X(Mulh) X(Mulhsu) X(Mulhu) X(Div) X(Divu) X(Rem) X(Remu)                          \
  X(Mulw) X(Divw) X(Divuw) X(Remw) X(Remuw)                                                \
  X(Lb) X(Lh) X(Lw) X(Ld) X(Lbu) X(Lhu) X(Lwu)                                             \
  X(Sb) X(Sh) X(Sw) X(Sd)                                                                  \
  X(Beq) X(Bne) X(Blt) X(Bge) X(Bltu) X(Bgeu)                                              \
  X(Jal) X(Jalr)                                                                           \
  X(Fence) X(FenceI) X(Ecall) X(Ebreak) X(Mret) X(Sret) X(Wfi) X(SfenceVma)                \
  X(Csrrw) X(Csrrs) X(Csrrc) X(Csrrwi) X(Csrrsi) X(Csrrci)                                 \
  X(LrW) X(LrD) X(ScW) X(ScD) X(AmoW) X(AmoD)                                              \
  X(Flw) X(Fld) X(Fsw) X(Fsd) X(FpOp)

enum class Op : uint16_t {
#define TANDEM_CPU_OP_ENUM(name) name,
  TANDEM_CPU_OPS(TANDEM_CPU_OP_ENUM)
#undef TANDEM_CPU_OP_ENUM
      Count
};

// AMO function codes (funct5 of the A extension), stored in DecodedInsn::imm for AmoW/AmoD.
enum class AmoFunc : uint8_t {
  Add = 0x00, Swap = 0x01, Xor = 0x04, Or = 0x08, And = 0x0c,
  Min = 0x10, Max = 0x14, Minu = 0x18, Maxu = 0x1c,
};

// F/D operations other than loads and stores: Op::FpOp with imm = FpKind | flags below. The
// rounding mode (bits 14:12) and rs3 (bits 31:27) are read from `raw`.
enum class FpKind : uint8_t {
  Add, Sub, Mul, Div, Sqrt, Sgnj, Sgnjn, Sgnjx, Min, Max, Eq, Lt, Le, Class,
  MvToX, MvFromX,                  // fmv.x.w/d, fmv.w/d.x
  CvtW, CvtWu, CvtL, CvtLu,        // float -> integer
  CvtFromW, CvtFromWu, CvtFromL, CvtFromLu,
  Madd, Msub, Nmsub, Nmadd,
  CvtSD, CvtDS,                    // fcvt.s.d, fcvt.d.s (kFpDouble clear)
};
inline constexpr int32_t kFpDouble = 0x100;  // operates on binary64 (else binary32)
inline constexpr int32_t kFpUsesRm = 0x200;  // has an rm field (dynamic rm read from frm)

struct DecodedInsn {
  Op op = Op::Undecoded;
  uint8_t rd = 0;
  uint8_t rs1 = 0;
  uint8_t rs2 = 0;
  uint8_t len = 0;          // instruction length in bytes (2 or 4); 0 for Undecoded/Exit
  uint16_t block_left = 0;  // instructions from this one to the end of its block, inclusive
  int32_t imm = 0;          // immediate, shift amount, CSR number or AMO function
  // Most ops: the instruction bits (mtval of an illegal instruction). Branches and JAL do
  // not need them and use the field instead as a successor cache (see SuccessorCache).
  uint32_t raw = 0;
};
static_assert(sizeof(DecodedInsn) == 16);

// For a branch or JAL inside a page's entries: the distance (in entries) from the branch
// to the entry of its taken target and of its fall-through, filled in by the run loop the
// first time each is looked up; 0 = not known yet. Distances are relative, so they survive
// the entries vector growing, and they vanish with the page's entries on invalidation.
struct SuccessorCache {
  static int16_t taken(const DecodedInsn& d) { return static_cast<int16_t>(d.raw & 0xffff); }
  static int16_t fallthrough(const DecodedInsn& d) { return static_cast<int16_t>(d.raw >> 16); }
  static void set_taken(DecodedInsn& d, int16_t v) {
    d.raw = (d.raw & 0xffff0000u) | static_cast<uint16_t>(v);
  }
  static void set_fallthrough(DecodedInsn& d, int16_t v) {
    d.raw = (d.raw & 0xffffu) | (uint32_t{static_cast<uint16_t>(v)} << 16);
  }
};

// Ops whose only effect is writing rd: with rd == x0 they are no-ops (HINT space). The
// translator covers all of them too (jit.cpp).
inline bool is_pure_alu(Op op) {
  switch (op) {
    case Op::Li: case Op::Mv: case Op::Auipc:
    case Op::Addi: case Op::Slti: case Op::Sltiu: case Op::Xori: case Op::Ori: case Op::Andi:
    case Op::Slli: case Op::Srli: case Op::Srai:
    case Op::Addiw: case Op::Slliw: case Op::Srliw: case Op::Sraiw:
    case Op::Add: case Op::Sub: case Op::Sll: case Op::Slt: case Op::Sltu: case Op::Xor:
    case Op::Srl: case Op::Sra: case Op::Or: case Op::And:
    case Op::Addw: case Op::Subw: case Op::Sllw: case Op::Srlw: case Op::Sraw:
    case Op::Mul: case Op::Mulh: case Op::Mulhsu: case Op::Mulhu: case Op::Div: case Op::Divu:
    case Op::Rem: case Op::Remu: case Op::Mulw: case Op::Divw: case Op::Divuw: case Op::Remw:
    case Op::Remuw:
      return true;
    default:
      return false;
  }
}

inline bool has_successor_cache(Op op) {
  switch (op) {
    case Op::Beq: case Op::Bne: case Op::Blt: case Op::Bge: case Op::Bltu: case Op::Bgeu:
    case Op::Jal:
      return true;
    default:
      return false;
  }
}

inline bool is_block_terminator(Op op) {
  switch (op) {
    case Op::Beq: case Op::Bne: case Op::Blt: case Op::Bge: case Op::Bltu: case Op::Bgeu:
    case Op::Jal: case Op::Jalr: case Op::Illegal:
    case Op::FenceI: case Op::Ecall: case Op::Ebreak: case Op::Mret: case Op::Sret:
    case Op::Wfi: case Op::SfenceVma:
    case Op::Csrrw: case Op::Csrrs: case Op::Csrrc: case Op::Csrrwi: case Op::Csrrsi:
    case Op::Csrrci:
      return true;
    default:
      return false;
  }
}

// Decodes one instruction from its bits (the low 16 bits for a compressed one).
// Never fails: unknown encodings decode to Op::Illegal with raw set.
DecodedInsn decode(uint32_t bits);

// ---- The translator's view of decoded code (vmm/cpu/jit.h, docs/translator.md) ----
// What translated code returns (in rax:rdx under the System V ABI).
struct JitResult {
  // kJumped: the block ended with a branch or jump and `pc` is its target. Otherwise the
  // distance (in entries, from the block's first entry) of the entry to resume at on the
  // interpreter; `pc` is that instruction's address. Everything before it retired.
  int64_t resume;
  uint64_t pc;
};
inline constexpr int64_t kJumped = INT64_MIN;

// The budget a translated block may use beyond its own first run: a block whose branch
// goes back to its own start runs again while `left` (instructions the run loop's budget
// has after this block) still holds the whole block, exactly as the run loop would enter it
// again; each extra run moves its length from `left` to `extra`, which the run loop adds to
// icount.
struct JitBudget {
  uint64_t left;
  uint64_t extra;
};

// x: the 33 register slots; load_tlb/store_tlb: the current data privilege's TLB sets;
// pc: the virtual address of the block's first instruction.
using JitCode = JitResult (*)(uint64_t* x, const TlbEntry* load_tlb, const TlbEntry* store_tlb,
                              uint64_t pc, JitBudget* budget);

// Per decoded entry: its translation, or how often it was entered untranslated.
struct JitSlot {
  static constexpr uint16_t kNever = 0xffff;  // the first instruction is not translatable
  JitCode code = nullptr;
  uint16_t heat = 0;
};

// The decoded instructions of one 4 KiB physical page. Blocks are stored densely, one
// entry per instruction in program order, so straight-line execution steps to `entry + 1`
// (no dependence on the instruction length). Each block ends with a terminator
// instruction, or with a trailer entry: Exit (page end, or an instruction crossing it) or
// Continue (the block ran into code decoded earlier; imm = distance to that entry).
// `index` maps each 2-byte slot of the page to its entry.
struct DecodedPage {
  static constexpr unsigned kSlots = 4096 / 2;
  static constexpr uint16_t kNone = 0xffff;
  // Every slot is decoded at most once and each block adds at most one trailer, so this
  // bound is never reached in practice; decode_block() starts afresh if it would be.
  static constexpr size_t kCapacity = 2 * kSlots + 4;

  std::array<uint16_t, kSlots> index;
  // Grows only in decode_block(), which the run loop calls only when no entry pointer is
  // live (pointers are taken after it returns), so reallocation is safe.
  std::vector<DecodedInsn> entries;
  // Translations by entry index (grown on demand, at most entries.size(); dropped with them).
  std::vector<JitSlot> jit;

  DecodedPage() { index.fill(kNone); }
  // Called only between blocks (never while an entry of this page is executing).
  void invalidate() {
    index.fill(kNone);
    entries.clear();
    jit.clear();
  }
};

}  // namespace tandem::vmm::cpu
