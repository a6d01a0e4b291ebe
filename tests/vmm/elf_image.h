#pragma once
// Minimal ELF64 RISC-V executables for the loader and boot tests: one PT_LOAD segment.
#include <elf.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

namespace tandem::test {

struct ElfSegment {
  uint64_t paddr = 0;
  uint64_t vaddr = 0;
  std::vector<uint8_t> code;  // the file bytes of the segment
  uint64_t bss = 0;           // more bytes in memory than in the file
  uint64_t entry_offset = 0;  // e_entry = vaddr + entry_offset
  // Where the segment starts in the file: right after the headers, or e.g. page-aligned.
  uint64_t file_offset = sizeof(Elf64_Ehdr) + sizeof(Elf64_Phdr);
};

inline std::vector<uint8_t> elf_image(const ElfSegment& s) {
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_RISCV;
  eh.e_version = EV_CURRENT;
  eh.e_entry = s.vaddr + s.entry_offset;
  eh.e_phoff = sizeof eh;
  eh.e_ehsize = sizeof eh;
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = s.file_offset;
  ph.p_vaddr = s.vaddr;
  ph.p_paddr = s.paddr;
  ph.p_filesz = s.code.size();
  ph.p_memsz = s.code.size() + s.bss;
  // Never shorter than the headers, whatever file_offset says (a test may point it inside them).
  const uint64_t headers = sizeof eh + sizeof ph;
  std::vector<uint8_t> out(std::max(s.file_offset + s.code.size(), headers), 0);
  std::memcpy(out.data(), &eh, sizeof eh);
  std::memcpy(out.data() + sizeof eh, &ph, sizeof ph);
  if (!s.code.empty()) std::memcpy(out.data() + s.file_offset, s.code.data(), s.code.size());
  return out;
}

}  // namespace tandem::test
