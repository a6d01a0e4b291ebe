#pragma once
// The x86-64 translator (docs/translator.md). It turns a prefix of a decoded block into host
// code that runs on the architectural state in place (guest registers stay in memory) and
// returns to the interpreter's run loop, which keeps all accounting: the budget is checked at
// block entry, icount is advanced by the whole block up front, and every instruction the
// translator does not cover (including every TLB miss, misaligned or MMIO access) is run by
// the interpreter from the entry where translated code stopped.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "vmm/cpu/decoded.h"

namespace tandem::vmm::cpu {

// True on hosts the translator supports (x86-64).
bool jit_supported();

class Jit {
 public:
  Jit();
  ~Jit();
  Jit(const Jit&) = delete;
  Jit& operator=(const Jit&) = delete;

  // Translates the block that starts at `first` (an entry of a DecodedPage, followed by the
  // rest of its block). nullptr if the first instruction is not covered. Never fails
  // for lack of space: call has_room() first and reset() when it says no.
  JitCode translate(const DecodedInsn* first);
  bool has_room() const;
  // Forgets all translations (the caller drops every JitSlot first).
  void reset();
  size_t code_bytes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::vmm::cpu
