// The x86-64 translator: emits host code for a prefix of a decoded block with Xbyak (see
// jit.h and docs/translator.md for the contract with the run loop).
//
// Register use in translated code: rbx = guest register file (x[0..32]), r12 = load TLB set,
// r13 = store TLB set, r14 = the virtual pc of the block's first instruction, r15 = the
// JitBudget; rax, rcx, rdx, rsi, rdi, r11 are scratch. Guest registers live in memory (no caching across instructions
// yet), so every exit leaves the architectural state complete.
#include "vmm/cpu/jit.h"

#include <cstring>
#include <memory>
#include <vector>

#include "vmm/cpu/alu.h"
#include "vmm/cpu/hart_impl.h"

#if defined(__x86_64__)
#include <xbyak/xbyak.h>
#endif

namespace tandem::vmm::cpu {

#if defined(__x86_64__)

namespace {

static_assert(offsetof(TlbEntry, tag) == 0 && offsetof(TlbEntry, addend) == 8 &&
              sizeof(TlbEntry) == 16);
static_assert(kTlbSize == 256);

constexpr size_t kArenaBytes = 32u << 20;
// Upper bound of one translation: kMaxInsns instructions of at most ~100 bytes each plus
// their exit stubs; has_room() keeps this much free.
constexpr unsigned kMaxInsns = 256;
constexpr size_t kMaxBlockBytes = kMaxInsns * 160 + 4096;

// Out-of-line helpers for what x86 does not compute the RISC-V way (division never traps).
uint64_t h_mulhsu(uint64_t a, uint64_t b) { return alu::mulhsu(a, b); }
uint64_t h_div(uint64_t a, uint64_t b) { return alu::div_signed(a, b); }
uint64_t h_divu(uint64_t a, uint64_t b) { return b == 0 ? ~uint64_t{0} : a / b; }
uint64_t h_rem(uint64_t a, uint64_t b) { return alu::rem_signed(a, b); }
uint64_t h_remu(uint64_t a, uint64_t b) { return b == 0 ? a : a % b; }
uint64_t h_divw(uint64_t a, uint64_t b) { return alu::divw(a, b); }
uint64_t h_divuw(uint64_t a, uint64_t b) { return alu::divuw(a, b); }
uint64_t h_remw(uint64_t a, uint64_t b) { return alu::remw(a, b); }
uint64_t h_remuw(uint64_t a, uint64_t b) { return alu::remuw(a, b); }

bool covered(Op op) {
  if (is_pure_alu(op)) return true;
  switch (op) {
    case Op::Nop: case Op::Fence:
    case Op::Lb: case Op::Lh: case Op::Lw: case Op::Ld: case Op::Lbu: case Op::Lhu: case Op::Lwu:
    case Op::Sb: case Op::Sh: case Op::Sw: case Op::Sd:
    case Op::Beq: case Op::Bne: case Op::Blt: case Op::Bge: case Op::Bltu: case Op::Bgeu:
    case Op::Jal: case Op::Jalr:
      return true;
    default:
      return false;
  }
}

using namespace Xbyak::util;

class Emitter : public Xbyak::CodeGenerator {
 public:
  Emitter() : Xbyak::CodeGenerator(kArenaBytes) {}

  JitCode translate(const DecodedInsn* first) {
    if (!covered(first->op)) return nullptr;
    const uint8_t* const start = getCurr();
    stubs_.clear();
    Xbyak::Label epilogue;

    push(rbx);
    push(r12);
    push(r13);
    push(r14);
    push(r15);  // five pushes keep rsp 16-byte aligned for helper calls
    mov(rbx, rdi);
    mov(r12, rsi);
    mov(r13, rdx);
    mov(r14, rcx);
    mov(r15, r8);
    block_length_ = first->block_left;
    head_ = std::make_unique<Xbyak::Label>();
    L(*head_);

    const DecodedInsn* e = first;
    int64_t off = 0;  // byte offset of e's pc from the block's first pc
    unsigned n = 0;
    for (;;) {
      if (e->op == Op::Continue) {
        e += e->imm;
        continue;
      }
      const int64_t k = e - first;
      if (n >= kMaxInsns || !covered(e->op)) {
        exit_to(k, off, epilogue);
        break;
      }
      if (emit(*e, k, off, epilogue)) break;  // a branch or jump ended the block
      off += e->len;
      ++e;
      ++n;
    }
    for (Stub& stub : stubs_) {
      L(*stub.label);
      exit_to(stub.k, stub.off, epilogue);
    }
    L(epilogue);
    pop(r15);
    pop(r14);
    pop(r13);
    pop(r12);
    pop(rbx);
    ret();
    stubs_.clear();
    return reinterpret_cast<JitCode>(const_cast<uint8_t*>(start));
  }

 private:
  struct Stub {
    std::unique_ptr<Xbyak::Label> label;
    int64_t k;
    int64_t off;
  };

  const Xbyak::Address xr(unsigned i) { return qword[rbx + 8 * i]; }
  void read(const Xbyak::Reg64& r, unsigned i) {
    if (i == 0) {
      xor_(r.cvt32(), r.cvt32());
    } else {
      mov(r, xr(i));
    }
  }
  void write(unsigned rd, const Xbyak::Reg64& r) {
    if (rd != 0) mov(xr(rd), r);
  }
  void exit_to(int64_t k, int64_t off, Xbyak::Label& epilogue) {
    mov(rax, k);
    lea(rdx, ptr[r14 + static_cast<int32_t>(off)]);
    jmp(epilogue, T_NEAR);
  }
  Xbyak::Label& stub(int64_t k, int64_t off) {
    stubs_.push_back(Stub{std::make_unique<Xbyak::Label>(), k, off});
    return *stubs_.back().label;
  }
  void call_helper(uint64_t (*fn)(uint64_t, uint64_t)) {
    mov(rdi, rax);
    mov(rsi, rcx);
    mov(r11, reinterpret_cast<uint64_t>(fn));
    call(r11);
  }
  // rax = effective address; rdx = its TLB entry in `tlb`; jumps to a miss stub unless the
  // entry's tag equals the address masked to its page and alignment bits.
  void tlb_lookup(const DecodedInsn& d, const Xbyak::Reg64& tlb, unsigned size, int64_t k,
                  int64_t off) {
    read(rax, d.rs1);
    if (d.imm != 0) add(rax, d.imm);
    mov(rdx, rax);
    shr(rdx, kPageShift);
    and_(edx, kTlbSize - 1);
    shl(edx, 4);
    add(rdx, tlb);
    mov(rcx, rax);
    and_(rcx, static_cast<int32_t>(~(kPageSize - 1)) | static_cast<int32_t>(size - 1));
    cmp(rcx, qword[rdx]);
    jne(stub(k, off), T_NEAR);
    mov(rdx, qword[rdx + 8]);
  }
  void branch(const DecodedInsn& d, int64_t off, Xbyak::Label& epilogue) {
    read(rax, d.rs1);
    read(rcx, d.rs2);
    cmp(rax, rcx);
    Xbyak::Label taken;
    switch (d.op) {
      case Op::Beq: je(taken, T_NEAR); break;
      case Op::Bne: jne(taken, T_NEAR); break;
      case Op::Blt: jl(taken, T_NEAR); break;
      case Op::Bge: jge(taken, T_NEAR); break;
      case Op::Bltu: jb(taken, T_NEAR); break;
      default: jae(taken, T_NEAR); break;  // Bgeu
    }
    mov(rax, static_cast<uint64_t>(kJumped));
    lea(rdx, ptr[r14 + static_cast<int32_t>(off + d.len)]);
    jmp(epilogue, T_NEAR);
    L(taken);
    if (off + d.imm == 0) {
      back_edge(epilogue);
      return;
    }
    mov(rax, static_cast<uint64_t>(kJumped));
    lea(rdx, ptr[r14 + static_cast<int32_t>(off + d.imm)]);
    jmp(epilogue, T_NEAR);
  }

  // Emits one instruction; true if it ended the block.
  bool emit(const DecodedInsn& d, int64_t k, int64_t off, Xbyak::Label& epilogue) {
    const int32_t imm = d.imm;
    switch (d.op) {
      case Op::Nop:
      case Op::Fence:
        return false;
      case Op::Li:
        mov(rax, static_cast<uint64_t>(static_cast<int64_t>(imm)));
        write(d.rd, rax);
        return false;
      case Op::Mv:
        read(rax, d.rs1);
        write(d.rd, rax);
        return false;
      case Op::Auipc:
        mov(rax, static_cast<uint64_t>(off + imm));
        add(rax, r14);
        write(d.rd, rax);
        return false;
      case Op::Addi: case Op::Xori: case Op::Ori: case Op::Andi:
      case Op::Slli: case Op::Srli: case Op::Srai:
        read(rax, d.rs1);
        switch (d.op) {
          case Op::Addi: add(rax, imm); break;
          case Op::Xori: xor_(rax, imm); break;
          case Op::Ori: or_(rax, imm); break;
          case Op::Andi: and_(rax, imm); break;
          case Op::Slli: shl(rax, static_cast<uint8_t>(imm)); break;
          case Op::Srli: shr(rax, static_cast<uint8_t>(imm)); break;
          default: sar(rax, static_cast<uint8_t>(imm)); break;
        }
        write(d.rd, rax);
        return false;
      case Op::Slti: case Op::Sltiu:
        read(rcx, d.rs1);
        xor_(eax, eax);
        cmp(rcx, imm);  // imm sign-extended to 64 bits, as RISC-V does for SLTIU too
        if (d.op == Op::Slti) setl(al); else setb(al);
        write(d.rd, rax);
        return false;
      case Op::Addiw: case Op::Slliw: case Op::Srliw: case Op::Sraiw:
        read(rax, d.rs1);
        switch (d.op) {
          case Op::Addiw: add(eax, imm); break;
          case Op::Slliw: shl(eax, static_cast<uint8_t>(imm)); break;
          case Op::Srliw: shr(eax, static_cast<uint8_t>(imm)); break;
          default: sar(eax, static_cast<uint8_t>(imm)); break;
        }
        movsxd(rax, eax);
        write(d.rd, rax);
        return false;
      case Op::Add: case Op::Sub: case Op::Xor: case Op::Or: case Op::And:
      case Op::Sll: case Op::Srl: case Op::Sra: case Op::Mul:
        read(rax, d.rs1);
        read(rcx, d.rs2);
        switch (d.op) {
          case Op::Add: add(rax, rcx); break;
          case Op::Sub: sub(rax, rcx); break;
          case Op::Xor: xor_(rax, rcx); break;
          case Op::Or: or_(rax, rcx); break;
          case Op::And: and_(rax, rcx); break;
          case Op::Sll: shl(rax, cl); break;  // x86 masks 64-bit shift counts to 6 bits
          case Op::Srl: shr(rax, cl); break;
          case Op::Sra: sar(rax, cl); break;
          default: imul(rax, rcx); break;
        }
        write(d.rd, rax);
        return false;
      case Op::Slt: case Op::Sltu:
        read(rcx, d.rs1);
        read(rdx, d.rs2);
        xor_(eax, eax);
        cmp(rcx, rdx);
        if (d.op == Op::Slt) setl(al); else setb(al);
        write(d.rd, rax);
        return false;
      case Op::Addw: case Op::Subw: case Op::Sllw: case Op::Srlw: case Op::Sraw: case Op::Mulw:
        read(rax, d.rs1);
        read(rcx, d.rs2);
        switch (d.op) {
          case Op::Addw: add(eax, ecx); break;
          case Op::Subw: sub(eax, ecx); break;
          case Op::Sllw: shl(eax, cl); break;  // 32-bit shift counts are masked to 5 bits
          case Op::Srlw: shr(eax, cl); break;
          case Op::Sraw: sar(eax, cl); break;
          default: imul(eax, ecx); break;
        }
        movsxd(rax, eax);
        write(d.rd, rax);
        return false;
      case Op::Mulh: case Op::Mulhu:
        read(rax, d.rs1);
        read(rcx, d.rs2);
        if (d.op == Op::Mulh) imul(rcx); else mul(rcx);
        write(d.rd, rdx);
        return false;
      case Op::Mulhsu: case Op::Div: case Op::Divu: case Op::Rem: case Op::Remu:
      case Op::Divw: case Op::Divuw: case Op::Remw: case Op::Remuw: {
        read(rax, d.rs1);
        read(rcx, d.rs2);
        uint64_t (*fn)(uint64_t, uint64_t) = nullptr;
        switch (d.op) {
          case Op::Mulhsu: fn = h_mulhsu; break;
          case Op::Div: fn = h_div; break;
          case Op::Divu: fn = h_divu; break;
          case Op::Rem: fn = h_rem; break;
          case Op::Remu: fn = h_remu; break;
          case Op::Divw: fn = h_divw; break;
          case Op::Divuw: fn = h_divuw; break;
          case Op::Remw: fn = h_remw; break;
          default: fn = h_remuw; break;
        }
        call_helper(fn);
        write(d.rd, rax);
        return false;
      }
      case Op::Lb: case Op::Lh: case Op::Lw: case Op::Ld: case Op::Lbu: case Op::Lhu:
      case Op::Lwu: {
        const unsigned size = d.op == Op::Lb || d.op == Op::Lbu   ? 1
                              : d.op == Op::Lh || d.op == Op::Lhu ? 2
                              : d.op == Op::Ld                    ? 8
                                                                  : 4;
        tlb_lookup(d, r12, size, k, off);
        switch (d.op) {
          case Op::Lb: movsx(rax, byte[rdx + rax]); break;
          case Op::Lbu: movzx(eax, byte[rdx + rax]); break;
          case Op::Lh: movsx(rax, word[rdx + rax]); break;
          case Op::Lhu: movzx(eax, word[rdx + rax]); break;
          case Op::Lw: movsxd(rax, dword[rdx + rax]); break;
          case Op::Lwu: mov(eax, dword[rdx + rax]); break;
          default: mov(rax, qword[rdx + rax]); break;
        }
        write(d.rd, rax);
        return false;
      }
      case Op::Sb: case Op::Sh: case Op::Sw: case Op::Sd: {
        const unsigned size = d.op == Op::Sb ? 1 : d.op == Op::Sh ? 2 : d.op == Op::Sw ? 4 : 8;
        tlb_lookup(d, r13, size, k, off);
        read(rcx, d.rs2);
        switch (size) {
          case 1: mov(byte[rdx + rax], cl); break;
          case 2: mov(word[rdx + rax], cx); break;
          case 4: mov(dword[rdx + rax], ecx); break;
          default: mov(qword[rdx + rax], rcx); break;
        }
        return false;
      }
      case Op::Beq: case Op::Bne: case Op::Blt: case Op::Bge: case Op::Bltu: case Op::Bgeu:
        branch(d, off, epilogue);
        return true;
      case Op::Jal:
        lea(rax, ptr[r14 + static_cast<int32_t>(off + d.len)]);
        write(d.rd, rax);
        if (off + imm == 0) {
          back_edge(epilogue);
          return true;
        }
        mov(rax, static_cast<uint64_t>(kJumped));
        lea(rdx, ptr[r14 + static_cast<int32_t>(off + imm)]);
        jmp(epilogue, T_NEAR);
        return true;
      case Op::Jalr:
        read(rdx, d.rs1);  // the target is computed before rd is written (rd may be rs1)
        if (imm != 0) add(rdx, imm);
        and_(rdx, -2);
        lea(rax, ptr[r14 + static_cast<int32_t>(off + d.len)]);
        write(d.rd, rax);
        mov(rax, static_cast<uint64_t>(kJumped));
        jmp(epilogue, T_NEAR);
        return true;
      default:
        exit_to(k, off, epilogue);  // not reached: covered() said yes
        return true;
    }
  }

  // A taken branch or JAL back to the block's own start: run the block again if the budget
  // holds all of it (the run loop would enter it again right away, checking just that),
  // else return to the run loop at the target.
  void back_edge(Xbyak::Label& epilogue) {
    Xbyak::Label out;
    mov(rax, qword[r15]);
    cmp(rax, block_length_);
    jb(out, T_NEAR);
    sub(rax, block_length_);
    mov(qword[r15], rax);
    add(qword[r15 + 8], block_length_);
    jmp(*head_, T_NEAR);
    L(out);
    mov(rax, static_cast<uint64_t>(kJumped));
    mov(rdx, r14);
    jmp(epilogue, T_NEAR);
  }

  std::vector<Stub> stubs_;
  std::unique_ptr<Xbyak::Label> head_;  // the block's first instruction (after the prologue)
  int32_t block_length_ = 0;             // instructions in the whole block (its first entry's block_left)
};

}  // namespace

struct Jit::Impl {
  Emitter emitter;
};

bool jit_supported() { return true; }

Jit::Jit() : impl_(std::make_unique<Impl>()) {}
Jit::~Jit() = default;

JitCode Jit::translate(const DecodedInsn* first) { return impl_->emitter.translate(first); }
bool Jit::has_room() const { return impl_->emitter.getSize() + kMaxBlockBytes <= kArenaBytes; }
void Jit::reset() { impl_->emitter.reset(); }
size_t Jit::code_bytes() const { return impl_->emitter.getSize(); }

#else  // not x86-64: the interpreter only

struct Jit::Impl {};
bool jit_supported() { return false; }
Jit::Jit() = default;
Jit::~Jit() = default;
JitCode Jit::translate(const DecodedInsn*) { return nullptr; }
bool Jit::has_room() const { return true; }
void Jit::reset() {}
size_t Jit::code_bytes() const { return 0; }

#endif

}  // namespace tandem::vmm::cpu
