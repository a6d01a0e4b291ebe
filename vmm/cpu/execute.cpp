// The run loop: threaded dispatch over pre-decoded instructions with an exact budget.
//
// Instruction counting. icount counts retired instructions; an instruction that traps does
// not retire. On entering a block (a straight run of decoded instructions ending at a
// branch, jump, CSR/system instruction or the page end), the loop compares the block's
// length with the remaining budget: if the block fits, icount is advanced by the whole
// block up front and the block runs without per-instruction checks; otherwise exactly one
// instruction runs, copied to a scratch slot followed by an Exit trailer. When an
// instruction traps or leaves its block early, the part of the block that did not retire
// is subtracted again (DecodedInsn::block_left), so icount is exact at every point anyone
// can observe it (traps, CSR reads, device accesses, returns from run()).
//
// Dispatch uses computed goto (a GCC/Clang extension) through one table indexed by Op.
#include <cstring>

#include "vmm/cpu/alu.h"
#include "vmm/cpu/hart_impl.h"

namespace tandem::vmm {

using cpu::DecodedInsn;
using cpu::Op;
using namespace alu;

namespace {
constexpr uint64_t kPageMask = ~(kPageSize - 1);

// Size and sign of each load op, for the shared slow path.
struct LoadShape {
  unsigned size;
  bool sign;
};
inline LoadShape load_shape(Op op) {
  switch (op) {
    case Op::Lb: return {1, true};
    case Op::Lh: return {2, true};
    case Op::Lw: return {4, true};
    case Op::Lbu: return {1, false};
    case Op::Lhu: return {2, false};
    case Op::Lwu: return {4, false};
    default: return {8, false};
  }
}
inline uint64_t extend_loaded(uint64_t v, LoadShape shape) {
  if (!shape.sign || shape.size == 8) return v;
  const unsigned shift = 64 - 8 * shape.size;
  return static_cast<uint64_t>(as_signed(v << shift) >> shift);
}
inline unsigned store_size(Op op) {
  switch (op) {
    case Op::Sb: return 1;
    case Op::Sh: return 2;
    case Op::Sw: return 4;
    default: return 8;
  }
}
}  // namespace

// Each handler must keep its own copy of the dispatch jump (threaded code): stop GCC from
// merging the identical tails into one shared indirect jump, which defeats branch prediction.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-crossjumping", "no-gcse")))
#endif
HartStop Hart::Impl::run(uint64_t stop) {
  if (s.icount >= stop) return HartStop::Budget;
  if (bus.stop_requested()) return HartStop::Event;
  if (ram.dirty_generation() != store_tlb_dirty_generation) {
    // Dirty bits were cleared (checkpoint): store fast paths must mark pages again.
    flush_store_tlbs();
    store_tlb_dirty_generation = ram.dirty_generation();
  }

  static const void* const kRunTable[] = {
#define TANDEM_CPU_OP_LABEL(name) &&op_##name,
      TANDEM_CPU_OPS(TANDEM_CPU_OP_LABEL)
#undef TANDEM_CPU_OP_LABEL
  };
  static_assert(sizeof(kRunTable) / sizeof(kRunTable[0]) == static_cast<size_t>(Op::Count));

  // Registers are addressed through `this` (one base register for all hart state).
  uint64_t (&x)[33] = s.regs;
  uint64_t pc = s.pc;
  // icount lives in a register while running; s.icount is written back before anything
  // that can observe it (device accesses, CSR reads, returns).
  uint64_t icount = s.icount;
  DecodedInsn* e = nullptr;
  // The branch whose successor is being looked up at `jump` (nullptr: none to cache).
  DecodedInsn* link_from = nullptr;
  bool link_taken = false;
  cpu::DecodedPage* page = nullptr;
  uint64_t page_index = 0;
  uint64_t page_vbase = 1;  // never equal to a page address: forces the first lookup
  // A single instruction run on its own (the exact tail of a budget, or an instruction
  // that crosses a page) is copied here, followed by an Exit trailer that returns to the
  // loop: its block_left is 1, so it counts as a block of one.
  DecodedInsn scratch[2];
  scratch[1].op = Op::Exit;

  // Instructions of the current block (from e on) counted in icount but not yet retired.
  auto unretired = [&]() -> uint64_t { return e->block_left; };

// Straight-line successor: blocks are stored densely, so it is simply the next entry.
#define NEXT()                                                                             \
  do {                                                                                     \
    pc += e->len;                                                                          \
    ++e;                                                                                   \
    goto* kRunTable[static_cast<uint16_t>(e->op)];                                         \
  } while (0)

#define LOAD_OP(NAME, TYPE, EXTEND)                                                        \
  op_##NAME : {                                                                            \
    const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);                          \
    const TlbEntry& t = cur_load_tlb[(va >> kPageShift) & (kTlbSize - 1)];                 \
    if (t.tag == (va & (kPageMask | (sizeof(TYPE) - 1)))) [[likely]] {                     \
      TYPE v;                                                                              \
      std::memcpy(&v, reinterpret_cast<const void*>(t.addend + va), sizeof(TYPE));         \
      x[e->rd] = static_cast<uint64_t>(static_cast<EXTEND>(v));                            \
      NEXT();                                                                              \
    }                                                                                      \
    goto slow_load;                                                                        \
  }

#define STORE_OP(NAME, TYPE)                                                               \
  op_##NAME : {                                                                            \
    const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);                          \
    const TlbEntry& t = cur_store_tlb[(va >> kPageShift) & (kTlbSize - 1)];                \
    if (t.tag == (va & (kPageMask | (sizeof(TYPE) - 1)))) [[likely]] {                     \
      const TYPE v = static_cast<TYPE>(x[e->rs2]);                                         \
      std::memcpy(reinterpret_cast<void*>(t.addend + va), &v, sizeof(TYPE));              \
      NEXT();                                                                              \
    }                                                                                      \
    goto slow_store;                                                                       \
  }

// F/D loads and stores: FS = Off makes them illegal; loads box binary32 values and set Dirty.
#define FP_LOAD_OP(NAME, TYPE, BOX)                                                        \
  op_##NAME : {                                                                            \
    if (!(s.mstatus & mstatus::kFS)) [[unlikely]] goto op_Illegal;                         \
    const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);                          \
    const TlbEntry& t = cur_load_tlb[(va >> kPageShift) & (kTlbSize - 1)];                 \
    if (t.tag == (va & (kPageMask | (sizeof(TYPE) - 1)))) [[likely]] {                     \
      TYPE v;                                                                              \
      std::memcpy(&v, reinterpret_cast<const void*>(t.addend + va), sizeof(TYPE));         \
      s.fregs[e->rd] = uint64_t{v} | (BOX);                                                \
      s.mstatus |= mstatus::kFS;                                                           \
      NEXT();                                                                              \
    }                                                                                      \
    goto slow_fp_load;                                                                     \
  }

#define FP_STORE_OP(NAME, TYPE)                                                            \
  op_##NAME : {                                                                            \
    if (!(s.mstatus & mstatus::kFS)) [[unlikely]] goto op_Illegal;                         \
    const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);                          \
    const TlbEntry& t = cur_store_tlb[(va >> kPageShift) & (kTlbSize - 1)];                \
    if (t.tag == (va & (kPageMask | (sizeof(TYPE) - 1)))) [[likely]] {                     \
      const TYPE v = static_cast<TYPE>(s.fregs[e->rs2]);                                   \
      std::memcpy(reinterpret_cast<void*>(t.addend + va), &v, sizeof(TYPE));              \
      NEXT();                                                                              \
    }                                                                                      \
    goto slow_fp_store;                                                                    \
  }

#define ALU(NAME, EXPR)                                                                    \
  op_##NAME : {                                                                            \
    const uint64_t a = x[e->rs1];                                                          \
    const uint64_t b = x[e->rs2];                                                          \
    const int64_t imm = e->imm;                                                            \
    (void)a;                                                                               \
    (void)b;                                                                               \
    (void)imm;                                                                             \
    x[e->rd] = (EXPR);                                                                     \
    NEXT();                                                                                \
  }

// A conditional branch: follows the successor cache when it knows the next entry.
#define BRANCH(NAME, COND)                                                                 \
  op_##NAME : {                                                                            \
    const uint64_t a = x[e->rs1];                                                          \
    const uint64_t b = x[e->rs2];                                                          \
    if (COND) {                                                                            \
      pc += static_cast<uint64_t>(static_cast<int64_t>(e->imm));                           \
      const int16_t distance = cpu::SuccessorCache::taken(*e);                             \
      if (distance != 0) {                                                                 \
        e += distance;                                                                     \
        goto enter;                                                                        \
      }                                                                                    \
      link_taken = true;                                                                   \
    } else {                                                                               \
      pc += e->len;                                                                        \
      const int16_t distance = cpu::SuccessorCache::fallthrough(*e);                       \
      if (distance != 0) {                                                                 \
        e += distance;                                                                     \
        goto enter;                                                                        \
      }                                                                                    \
      link_taken = false;                                                                  \
    }                                                                                      \
    link_from = e;                                                                         \
    goto jump;                                                                             \
  }

top:
  // Block boundary with full checks: code invalidations, budget, interrupts, fetch.
  if (code_written) apply_code_invalidations();
  if (icount >= stop) {
    s.pc = pc;
    s.icount = icount;
    return HartStop::Budget;
  }
  if (irq_check_needed) {
    s.pc = pc;
    if (take_pending_interrupt()) pc = s.pc;
  }
  {
    // Kept in members (not locals): block entry then needs no register juggling.
    const unsigned data_level = data_priv();
    cur_load_tlb = load_tlb[data_level].data();
    cur_store_tlb = store_tlb[data_level].data();
  }
  page = fetch_page(pc, page_index);
  if (!page) [[unlikely]] {
    take_exception(trap_cause, trap_tval, pc);
    pc = s.pc;
    goto trap_taken;
  }
  page_vbase = pc & kPageMask;
  {
    const unsigned slot = static_cast<unsigned>((pc & (kPageSize - 1)) >> 1);
    uint16_t entry = page->index[slot];
    if (entry == cpu::DecodedPage::kNone) {
      entry = decode_block(*page, page_index, slot);
      if (entry == cpu::DecodedPage::kNone) goto cross_page;
    }
    e = &page->entries[entry];
  }

enter: {
  // Block entry: e is the decoded entry for pc in the current page.
  const uint64_t left = stop - icount;
  if (left >= e->block_left) [[likely]] {
    icount += e->block_left;
    if (jit) {
      // Translated code runs a prefix of the block (or all of it, up to its branch) and
      // hands back the entry to resume at: the accounting above stays the interpreter's.
      if (const cpu::JitCode code = jit_code(*page, e)) {
        cpu::JitBudget budget{stop - icount, 0};
        const cpu::JitResult r = code(x, cur_load_tlb, cur_store_tlb, pc, &budget);
        icount += budget.extra;
        pc = r.pc;
        if (r.resume == cpu::kJumped) {
          link_from = nullptr;
          goto jump;
        }
        e += r.resume;
      }
    }
    goto* kRunTable[static_cast<uint16_t>(e->op)];
  }
  if (left == 0) {
    s.pc = pc;
    s.icount = icount;
    return HartStop::Budget;
  }
  scratch[0] = *e;
  goto run_single;
}

jump:
  // pc was set by a branch or jump: stay on the current page if possible. A branch or JAL
  // (link_from) remembers the entry it found, so next time it goes straight there.
  if (((pc ^ page_vbase) & kPageMask) == 0) {
    const uint16_t entry = page->index[(pc & (kPageSize - 1)) >> 1];
    if (entry != cpu::DecodedPage::kNone) {
      DecodedInsn* const target = &page->entries[entry];
      if (link_from) {
        // Only entries of this page's vector can cache (not the scratch slot).
        const ptrdiff_t from = link_from - page->entries.data();
        if (from >= 0 && static_cast<size_t>(from) < page->entries.size()) {
          const ptrdiff_t distance = target - link_from;
          if (distance != 0 && distance >= INT16_MIN && distance <= INT16_MAX) {
            if (link_taken) cpu::SuccessorCache::set_taken(*link_from, static_cast<int16_t>(distance));
            else cpu::SuccessorCache::set_fallthrough(*link_from, static_cast<int16_t>(distance));
          }
        }
        link_from = nullptr;
      }
      e = target;
      goto enter;
    }
  }
  link_from = nullptr;
  goto top;


cross_page: {
  // A 32-bit instruction whose second half is on the next page: fetch both halves through
  // the MMU and run it alone from a scratch slot.
  uint32_t bits = 0;
  if (!fetch_bits_slow(pc, bits)) {
    take_exception(trap_cause, trap_tval, pc);
    pc = s.pc;
    goto trap_taken;
  }
  scratch[0] = cpu::decode(bits);
  goto run_single;
}

run_single:
  scratch[0].block_left = 1;
  // A successor cache holds distances within its page's entries: meaningless here.
  if (cpu::has_successor_cache(scratch[0].op)) scratch[0].raw = 0;
  e = scratch;
  icount += 1;
  goto* kRunTable[static_cast<uint16_t>(e->op)];

raise:
  // The instruction at e trapped: it and the rest of its block did not retire.
  icount -= unretired();
  take_exception(trap_cause, trap_tval, pc);
  pc = s.pc;
  goto trap_taken;

trap_taken:
  // A guest whose trap vector itself faults would trap forever without retiring anything;
  // hand control back to the machine now and then so it can still service the world.
  if (icount == last_trap_icount) {
    if (++traps_without_progress >= kMaxTrapsWithoutProgress) {
      traps_without_progress = 0;
      s.pc = pc;
      s.icount = icount;
      return HartStop::Event;
    }
  } else {
    last_trap_icount = icount;
    traps_without_progress = 0;
  }
  goto top;

op_Undecoded:  // never stored in a page; here for completeness of the table
op_Exit:
  goto top;
op_Continue:
  // The block runs on into code decoded earlier (already counted in block_left).
  e += e->imm;  // imm: distance to the entry, within the same page's entries
  goto* kRunTable[static_cast<uint16_t>(e->op)];
op_Illegal:
  trap_cause = Cause::IllegalInsn;
  trap_tval = e->raw;
  goto raise;
op_Nop:
op_Fence:
  NEXT();

  ALU(Li, static_cast<uint64_t>(imm))
  ALU(Mv, a)
  op_Auipc : {
    x[e->rd] = pc + static_cast<uint64_t>(static_cast<int64_t>(e->imm));
    NEXT();
  }
  ALU(Addi, a + imm)
  ALU(Slti, as_signed(a) < imm ? 1 : 0)
  ALU(Sltiu, a < static_cast<uint64_t>(imm) ? 1 : 0)
  ALU(Xori, a ^ imm)
  ALU(Ori, a | imm)
  ALU(Andi, a & imm)
  ALU(Slli, a << imm)
  ALU(Srli, a >> imm)
  ALU(Srai, static_cast<uint64_t>(as_signed(a) >> imm))
  ALU(Addiw, sext32(a + imm))
  ALU(Slliw, sext32(static_cast<uint32_t>(a) << imm))
  ALU(Srliw, sext32(static_cast<uint32_t>(a) >> imm))
  ALU(Sraiw, sext32(static_cast<uint32_t>(static_cast<int32_t>(a) >> imm)))
  ALU(Add, a + b)
  ALU(Sub, a - b)
  ALU(Sll, a << (b & 63))
  ALU(Slt, as_signed(a) < as_signed(b) ? 1 : 0)
  ALU(Sltu, a < b ? 1 : 0)
  ALU(Xor, a ^ b)
  ALU(Srl, a >> (b & 63))
  ALU(Sra, static_cast<uint64_t>(as_signed(a) >> (b & 63)))
  ALU(Or, a | b)
  ALU(And, a & b)
  ALU(Addw, sext32(a + b))
  ALU(Subw, sext32(a - b))
  ALU(Sllw, sext32(static_cast<uint32_t>(a) << (b & 31)))
  ALU(Srlw, sext32(static_cast<uint32_t>(a) >> (b & 31)))
  ALU(Sraw, sext32(static_cast<uint32_t>(static_cast<int32_t>(a) >> (b & 31))))
  ALU(Mul, a * b)
  ALU(Mulh, mulh(a, b))
  ALU(Mulhsu, mulhsu(a, b))
  ALU(Mulhu, mulhu(a, b))
  ALU(Div, div_signed(a, b))
  ALU(Divu, b == 0 ? ~uint64_t{0} : a / b)
  ALU(Rem, rem_signed(a, b))
  ALU(Remu, b == 0 ? a : a % b)
  ALU(Mulw, sext32(a * b))
  ALU(Divw, divw(a, b))
  ALU(Divuw, divuw(a, b))
  ALU(Remw, remw(a, b))
  ALU(Remuw, remuw(a, b))

  LOAD_OP(Lb, int8_t, int64_t)
  LOAD_OP(Lh, int16_t, int64_t)
  LOAD_OP(Lw, int32_t, int64_t)
  LOAD_OP(Ld, uint64_t, uint64_t)
  LOAD_OP(Lbu, uint8_t, uint64_t)
  LOAD_OP(Lhu, uint16_t, uint64_t)
  LOAD_OP(Lwu, uint32_t, uint64_t)
  STORE_OP(Sb, uint8_t)
  STORE_OP(Sh, uint16_t)
  STORE_OP(Sw, uint32_t)
  STORE_OP(Sd, uint64_t)

  FP_LOAD_OP(Flw, uint32_t, 0xffffffff00000000)
  FP_LOAD_OP(Fld, uint64_t, 0)
  FP_STORE_OP(Fsw, uint32_t)
  FP_STORE_OP(Fsd, uint64_t)

op_FpOp:
  if (!fp_op(*e)) [[unlikely]] goto op_Illegal;
  NEXT();

  BRANCH(Beq, a == b)
  BRANCH(Bne, a != b)
  BRANCH(Blt, as_signed(a) < as_signed(b))
  BRANCH(Bge, as_signed(a) >= as_signed(b))
  BRANCH(Bltu, a < b)
  BRANCH(Bgeu, a >= b)

op_Jal: {
  x[e->rd] = pc + e->len;
  pc += static_cast<uint64_t>(static_cast<int64_t>(e->imm));
  const int16_t distance = cpu::SuccessorCache::taken(*e);
  if (distance != 0) {
    e += distance;
    goto enter;
  }
  link_from = e;
  link_taken = true;
  goto jump;
}
op_Jalr: {
  const uint64_t target = (x[e->rs1] + static_cast<int64_t>(e->imm)) & ~uint64_t{1};
  x[e->rd] = pc + e->len;
  pc = target;
  goto jump;
}

slow_load: {
  const LoadShape shape = load_shape(e->op);
  const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);
  // Devices see the exact icount: this instruction and its successors have not retired.
  const uint64_t pending = unretired();
  s.pc = pc;
  s.icount = icount - pending;
  mmio_accessed = false;  // set by the slow path when it reaches a device
  uint64_t value = 0;
  const bool ok = load_slow(va, shape.size, value);
  if (!ok) goto raise;
  x[e->rd] = extend_loaded(value, shape);
  if (mmio_accessed || code_written) goto retire_and_leave_block;
  NEXT();
}

slow_store: {
  const unsigned size = store_size(e->op);
  const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);
  const uint64_t pending = unretired();
  s.pc = pc;
  s.icount = icount - pending;
  mmio_accessed = false;
  const bool ok = store_slow(va, size, x[e->rs2]);
  if (!ok) goto raise;
  if (mmio_accessed || code_written) goto retire_and_leave_block;
  NEXT();
}

slow_fp_load: {
  const unsigned size = e->op == Op::Flw ? 4 : 8;
  const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);
  const uint64_t pending = unretired();
  s.pc = pc;
  s.icount = icount - pending;
  mmio_accessed = false;
  uint64_t value = 0;
  if (!load_slow(va, size, value)) goto raise;
  s.fregs[e->rd] = size == 4 ? (value & 0xffffffffu) | 0xffffffff00000000 : value;
  s.mstatus |= mstatus::kFS;
  if (mmio_accessed || code_written) goto retire_and_leave_block;
  NEXT();
}

slow_fp_store: {
  const unsigned size = e->op == Op::Fsw ? 4 : 8;
  const uint64_t va = x[e->rs1] + static_cast<int64_t>(e->imm);
  const uint64_t pending = unretired();
  s.pc = pc;
  s.icount = icount - pending;
  mmio_accessed = false;
  const uint64_t value = size == 4 ? (s.fregs[e->rs2] & 0xffffffffu) : s.fregs[e->rs2];
  if (!store_slow(va, size, value)) goto raise;
  if (mmio_accessed || code_written) goto retire_and_leave_block;
  NEXT();
}

retire_and_leave_block: {
  // e retired; the rest of its block did not run. After a device access, the machine gets
  // control back (an MMIO store may have changed interrupt state or asked to stop).
  icount -= unretired() - 1;
  pc += e->len;
  if (mmio_accessed) {
    mmio_accessed = false;
    const bool was_store =
        e->op == Op::Sb || e->op == Op::Sh || e->op == Op::Sw || e->op == Op::Sd ||
        e->op == Op::Fsw || e->op == Op::Fsd;
    if (was_store) {
      s.pc = pc;
      s.icount = icount;
      if (code_written) apply_code_invalidations();
      return HartStop::Event;
    }
    if (bus.stop_requested()) {
      s.pc = pc;
      s.icount = icount;
      if (code_written) apply_code_invalidations();
      return HartStop::Event;
    }
    irq_check_needed = true;  // a device read (e.g. a PLIC claim) may change mip
  }
  goto top;
}

op_LrW:
op_LrD: {
  const unsigned size = e->op == Op::LrW ? 4 : 8;
  uint64_t value = 0;
  if (!load_reserved(x[e->rs1], size, value)) goto raise;
  x[e->rd] = value;
  if (code_written) goto retire_and_leave_block;  // A-bit update hit a code page
  NEXT();
}
op_ScW:
op_ScD: {
  const unsigned size = e->op == Op::ScW ? 4 : 8;
  uint64_t result = 0;
  if (!store_conditional(x[e->rs1], size, x[e->rs2], result)) goto raise;
  x[e->rd] = result;
  if (code_written) goto retire_and_leave_block;
  NEXT();
}
op_AmoW:
op_AmoD: {
  const unsigned size = e->op == Op::AmoW ? 4 : 8;
  uint64_t old = 0;
  if (!amo(static_cast<cpu::AmoFunc>(e->imm), x[e->rs1], size, x[e->rs2], old)) goto raise;
  x[e->rd] = old;
  if (code_written) goto retire_and_leave_block;
  NEXT();
}

op_Csrrw:
op_Csrrs:
op_Csrrc:
op_Csrrwi:
op_Csrrsi:
op_Csrrci: {
  const bool immediate = e->op == Op::Csrrwi || e->op == Op::Csrrsi || e->op == Op::Csrrci;
  const bool always_writes = e->op == Op::Csrrw || e->op == Op::Csrrwi;
  const uint64_t operand = immediate ? e->rs1 : x[e->rs1];
  const bool writes = always_writes || e->rs1 != 0;
  uint64_t result = 0;
  s.pc = pc;
  // A CSR instruction ends its block, so icount - 1 instructions retired before it.
  if (!csr_op(e->op, static_cast<uint16_t>(e->imm), operand, writes, result, icount - 1)) {
    trap_cause = Cause::IllegalInsn;
    trap_tval = e->raw;
    goto raise;
  }
  if (e->rd != 0) x[e->rd] = result;
  pc += e->len;
  goto top;  // privilege, translation or interrupt state may have changed
}

op_Ecall:
  trap_cause = s.priv == 0 ? Cause::EcallFromU : s.priv == 1 ? Cause::EcallFromS : Cause::EcallFromM;
  trap_tval = 0;
  goto raise;
op_Ebreak:
  trap_cause = Cause::Breakpoint;
  trap_tval = 0;  // as qemu-system-riscv64 7.2
  goto raise;
op_Mret:
  if (s.priv != 3) goto op_Illegal;
  do_mret();
  pc = s.pc;
  goto top;
op_Sret:
  if (s.priv == 0 || (s.priv == 1 && (s.mstatus & mstatus::kTSR))) goto op_Illegal;
  do_sret();
  pc = s.pc;
  goto top;
op_Wfi:
  // As QEMU: WFI in U-mode is illegal (S-mode exists); in S-mode only when TW is set.
  if (s.priv == 0 || (s.priv == 1 && (s.mstatus & mstatus::kTW))) goto op_Illegal;
  pc += e->len;
  if ((s.mip & s.mie) != 0) goto top;  // a pending interrupt: WFI completes at once
  s.pc = pc;
  s.icount = icount;
  return HartStop::Wfi;
op_SfenceVma:
  if (s.priv == 0 || (s.priv == 1 && (s.mstatus & mstatus::kTVM))) goto op_Illegal;
  flush_tlbs();
  pc += e->len;
  goto top;
op_FenceI:
  // Decoded code is invalidated by every store to a code page, so the cache is already
  // coherent; FENCE.I only ends the block.
  pc += e->len;
  goto top;

#undef NEXT
#undef LOAD_OP
#undef STORE_OP
#undef FP_LOAD_OP
#undef FP_STORE_OP
#undef ALU
#undef BRANCH
}

}  // namespace tandem::vmm
