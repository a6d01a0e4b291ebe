#include "vmm/loader.h"

#include <elf.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

namespace tandem::vmm {

namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%#llx", static_cast<unsigned long long>(v));
  return buf;
}

// The RISC-V Linux boot image header (Documentation/riscv/boot-image-header.rst).
constexpr size_t kImageSizeOffset = 16;
constexpr size_t kImageMagic2Offset = 56;
constexpr char kImageMagic2[4] = {'R', 'S', 'C', 0x05};

// A Linux `Image` says how much memory it occupies once running (bss included).
uint64_t linux_image_size(const std::vector<uint8_t>& file) {
  if (file.size() < kImageMagic2Offset + sizeof kImageMagic2 ||
      std::memcmp(file.data() + kImageMagic2Offset, kImageMagic2, sizeof kImageMagic2) != 0) {
    return 0;
  }
  uint64_t size = 0;
  std::memcpy(&size, file.data() + kImageSizeOffset, sizeof size);
  return size;
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::exists(path, ec) && !std::filesystem::is_regular_file(path, ec)) {
    throw LoadError(path + ": not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError(path + ": cannot open: " + std::strerror(errno));
  // One read of the whole file (kernels and initrds are tens of MiB).
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  in.seekg(0, std::ios::beg);
  if (size < 0) throw LoadError(path + ": cannot determine the file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), size);
  if (in.gcount() != size) throw LoadError(path + ": read error");
  return bytes;
}

// `relocate_to`: where a kernel ELF linked outside RAM goes (see load_image_at); 0 = never.
LoadedImage load_elf(const std::string& path, const std::vector<uint8_t>& file, GuestMemory& mem,
                     uint64_t relocate_to = 0) {
  auto fail = [&](const std::string& why) { return LoadError(path + ": " + why); };
  if (file.size() < EI_NIDENT) throw fail("truncated ELF identification");
  if (file[EI_CLASS] != ELFCLASS64) throw fail("not a 64-bit ELF (RV64 guests only)");
  if (file[EI_DATA] != ELFDATA2LSB) throw fail("not a little-endian ELF");
  if (file.size() < sizeof(Elf64_Ehdr)) throw fail("truncated ELF header");
  Elf64_Ehdr eh;
  std::memcpy(&eh, file.data(), sizeof eh);
  if (eh.e_machine != EM_RISCV) {
    throw fail("ELF machine " + std::to_string(eh.e_machine) + " is not RISC-V (243)");
  }
  if (eh.e_type != ET_EXEC) throw fail("not an executable ELF (ET_EXEC)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) throw fail("unexpected program header size");
  if (eh.e_phoff > file.size() || uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr) > file.size() - eh.e_phoff) {
    throw fail("program headers lie past the end of the file (truncated?)");
  }

  auto program_header = [&](unsigned i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, file.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof ph);
    return ph;
  };
  // A relocatable kernel (Linux's vmlinux: physical addresses from 0, virtual 0xffffffff8...)
  // goes where its raw Image would: segments keep their offsets from the lowest one, which
  // lands at `relocate_to`, and the entry moves with the segment that holds it.
  uint64_t shift = 0;
  uint64_t entry = eh.e_entry;
  if (relocate_to != 0) {
    uint64_t lowest = UINT64_MAX;
    bool all_in_ram = true;
    for (unsigned i = 0; i < eh.e_phnum; ++i) {
      const Elf64_Phdr ph = program_header(i);
      if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
      lowest = std::min(lowest, ph.p_paddr);
      all_in_ram = all_in_ram && mem.contains(ph.p_paddr, ph.p_memsz);
    }
    if (!all_in_ram && lowest != UINT64_MAX) {
      shift = relocate_to - lowest;
      for (unsigned i = 0; i < eh.e_phnum; ++i) {
        const Elf64_Phdr ph = program_header(i);
        if (ph.p_type == PT_LOAD && eh.e_entry - ph.p_vaddr < ph.p_memsz) {
          entry = ph.p_paddr + (eh.e_entry - ph.p_vaddr) + shift;
          break;
        }
      }
    }
  }

  LoadedImage image;
  image.elf = true;
  image.entry = entry;
  image.lowest = UINT64_MAX;
  image.highest = 0;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph = program_header(i);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    ph.p_paddr += shift;
    const std::string seg = "segment " + std::to_string(i) + " at " + hex(ph.p_paddr);
    if (ph.p_filesz > ph.p_memsz) throw fail(seg + " has filesz > memsz");
    if (ph.p_offset > file.size() || ph.p_filesz > file.size() - ph.p_offset) {
      throw fail(seg + " lies past the end of the file (truncated?)");
    }
    // Physical addresses, as QEMU's loader uses for -kernel with -bios none.
    if (!mem.contains(ph.p_paddr, ph.p_memsz)) {
      throw fail(seg + " (" + std::to_string(ph.p_memsz) + " bytes) is outside RAM [" +
                 hex(mem.base()) + ", " + hex(mem.base() + mem.size()) + ")");
    }
    mem.write(ph.p_paddr, {file.data() + ph.p_offset, ph.p_filesz});
    // Zero the bss explicitly: RAM may hold an earlier image.
    const std::vector<uint8_t> zeros(ph.p_memsz - ph.p_filesz, 0);
    mem.write(ph.p_paddr + ph.p_filesz, zeros);
    image.lowest = std::min(image.lowest, ph.p_paddr);
    image.highest = std::max(image.highest, ph.p_paddr + ph.p_memsz);
  }
  if (image.highest == 0) throw fail("no loadable (PT_LOAD) segment");
  if (!mem.contains(image.entry, 2)) throw fail("entry point " + hex(image.entry) + " is outside RAM");
  return image;
}

}  // namespace

std::vector<uint8_t> read_guest_file(const std::string& path) {
  std::vector<uint8_t> file = read_file(path);
  if (file.empty()) throw LoadError(path + ": empty file");
  return file;
}

LoadedImage load_image_at(const std::string& path, GuestMemory& mem, uint64_t raw_base) {
  const std::vector<uint8_t> file = read_file(path);
  if (file.empty()) throw LoadError(path + ": empty image");
  if (file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0) {
    return load_elf(path, file, mem, raw_base);
  }
  const uint64_t footprint = std::max<uint64_t>(file.size(), linux_image_size(file));
  if (!mem.contains(raw_base, footprint)) {
    const uint64_t room = raw_base >= mem.base() && raw_base < mem.base() + mem.size()
                              ? mem.base() + mem.size() - raw_base : 0;
    throw LoadError(path + ": raw image of " + std::to_string(footprint) + " bytes at " + hex(raw_base) +
                    " does not fit in RAM (" + std::to_string(room) + " bytes from there to the end of " +
                    std::to_string(mem.size() >> 20) + " MiB)");
  }
  mem.write(raw_base, file);
  return LoadedImage{raw_base, raw_base, raw_base + footprint, false};
}

LoadedImage load_image(const std::string& path, GuestMemory& mem) {
  const std::vector<uint8_t> file = read_file(path);
  if (file.empty()) throw LoadError(path + ": empty image");
  if (file.size() >= SELFMAG && std::memcmp(file.data(), ELFMAG, SELFMAG) == 0) {
    return load_elf(path, file, mem);
  }
  if (file.size() > mem.size()) {
    throw LoadError(path + ": raw image of " + std::to_string(file.size()) +
                    " bytes does not fit in " + std::to_string(mem.size() >> 20) + " MiB of RAM");
  }
  mem.write(mem.base(), file);
  return LoadedImage{mem.base(), mem.base(), mem.base() + file.size(), false};
}

}  // namespace tandem::vmm
