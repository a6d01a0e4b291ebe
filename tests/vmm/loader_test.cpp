// Loader: a valid ELF64 RISC-V image and raw binaries load; every class of bad input is a
// LoadError with a one-line message naming the file.
#include <elf.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "tests/vmm/elf_image.h"
#include "tests/vmm/scratch_dir.h"
#include "vmm/loader.h"

namespace tandem::vmm {
namespace {

constexpr uint64_t kRam = 0x8000'0000;
constexpr uint64_t kRamBytes = 1 << 20;

class LoaderTest : public ::testing::Test {
 protected:
  LoaderTest() : mem(kRam, kRamBytes) {}

  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) { return scratch.write(name, bytes); }

  // A minimal ELF64 RISC-V executable: one PT_LOAD of `code` at `paddr` with `bss` extra bytes.
  static std::vector<uint8_t> elf(uint64_t paddr, const std::vector<uint8_t>& code, uint64_t bss = 0) {
    return test::elf_image({.paddr = paddr, .vaddr = paddr, .code = code, .bss = bss});
  }
  static Elf64_Ehdr* header(std::vector<uint8_t>& file) { return reinterpret_cast<Elf64_Ehdr*>(file.data()); }
  static Elf64_Phdr* phdr(std::vector<uint8_t>& file) {
    return reinterpret_cast<Elf64_Phdr*>(file.data() + sizeof(Elf64_Ehdr));
  }

  // Loads and returns the error message (empty if it loaded).
  std::string error_of(const std::string& path) {
    try {
      load_image(path, mem);
      return "";
    } catch (const LoadError& e) {
      return e.what();
    }
  }
  void expect_error(const std::string& path, const std::string& fragment) {
    const std::string msg = error_of(path);
    EXPECT_NE(msg.find(fragment), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << "message does not name the file: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message is not one line";
  }

  GuestMemory mem;
  tandem::test::ScratchDir scratch{"tandem_loader_test_"};
  const std::filesystem::path& dir = scratch.path();
};

TEST_F(LoaderTest, ElfSegmentsLoadAndBssIsZeroed) {
  // Dirty the bss area first: the loader must zero it, not rely on fresh RAM.
  const std::vector<uint8_t> junk(64, 0xff);
  mem.write(kRam + 0x1004, junk);
  const auto path = write("ok.elf", elf(kRam + 0x1000, {1, 2, 3, 4}, 32));
  const LoadedImage image = load_image(path, mem);
  EXPECT_TRUE(image.elf);
  EXPECT_EQ(image.entry, kRam + 0x1000);
  EXPECT_EQ(image.lowest, kRam + 0x1000);
  EXPECT_EQ(image.highest, kRam + 0x1000 + 36);
  std::vector<uint8_t> got(40);
  ASSERT_TRUE(mem.read(kRam + 0x1000, got));
  EXPECT_EQ(got[0], 1);
  EXPECT_EQ(got[3], 4);
  for (size_t i = 4; i < 36; ++i) EXPECT_EQ(got[i], 0) << "bss byte " << i;
  EXPECT_EQ(got[36], 0xff);  // past memsz: untouched
}

TEST_F(LoaderTest, RawBinaryLoadsAtDramBase) {
  const auto path = write("raw.bin", {0x13, 0, 0, 0});
  const LoadedImage image = load_image(path, mem);
  EXPECT_FALSE(image.elf);
  EXPECT_EQ(image.entry, kRam);
  uint8_t b[4];
  ASSERT_TRUE(mem.read(kRam, b));
  EXPECT_EQ(b[0], 0x13);
}

TEST_F(LoaderTest, MissingFile) { expect_error((dir / "nope.elf").string(), "cannot open"); }

TEST_F(LoaderTest, Directory) { expect_error(dir.string(), "not a regular file"); }

TEST_F(LoaderTest, EmptyFile) { expect_error(write("empty", {}), "empty"); }

TEST_F(LoaderTest, RawImageLargerThanRam) {
  expect_error(write("big.bin", std::vector<uint8_t>(kRamBytes + 1, 0x13)), "does not fit");
}

TEST_F(LoaderTest, NotRiscV) {
  auto file = elf(kRam, {0, 0, 0, 0});
  header(file)->e_machine = EM_X86_64;
  expect_error(write("x86.elf", file), "not RISC-V");
}

TEST_F(LoaderTest, Elf32) {
  auto file = elf(kRam, {0, 0, 0, 0});
  file[EI_CLASS] = ELFCLASS32;
  expect_error(write("rv32.elf", file), "64-bit");
}

TEST_F(LoaderTest, BigEndian) {
  auto file = elf(kRam, {0, 0, 0, 0});
  file[EI_DATA] = ELFDATA2MSB;
  expect_error(write("be.elf", file), "little-endian");
}

TEST_F(LoaderTest, TruncatedHeader) {
  auto file = elf(kRam, {0, 0, 0, 0});
  file.resize(40);
  expect_error(write("trunc_header.elf", file), "truncated");
}

TEST_F(LoaderTest, TruncatedProgramHeaders) {
  auto file = elf(kRam, {0, 0, 0, 0});
  file.resize(sizeof(Elf64_Ehdr) + 10);
  expect_error(write("trunc_ph.elf", file), "truncated");
}

TEST_F(LoaderTest, TruncatedSegmentData) {
  auto file = elf(kRam, std::vector<uint8_t>(256, 0x13));
  file.resize(file.size() - 100);
  expect_error(write("trunc_seg.elf", file), "truncated");
}

TEST_F(LoaderTest, SegmentOutsideRam) {
  expect_error(write("low.elf", elf(0x1000, {0, 0, 0, 0})), "outside RAM");
  auto file = elf(kRam + kRamBytes - 2, {0, 0, 0, 0});
  expect_error(write("straddle.elf", file), "outside RAM");
  auto huge = elf(kRam, {0, 0, 0, 0});
  phdr(huge)->p_memsz = UINT64_MAX;  // wraps around
  expect_error(write("huge.elf", huge), "outside RAM");
}

TEST_F(LoaderTest, FileSizeBiggerThanMemSize) {
  auto file = elf(kRam, {0, 0, 0, 0});
  phdr(file)->p_memsz = 2;
  expect_error(write("filesz.elf", file), "filesz > memsz");
}

TEST_F(LoaderTest, EntryOutsideRam) {
  auto file = elf(kRam, {0, 0, 0, 0});
  header(file)->e_entry = 0x1000;
  expect_error(write("entry.elf", file), "entry point");
}

TEST_F(LoaderTest, NoLoadableSegment) {
  auto file = elf(kRam, {0, 0, 0, 0});
  phdr(file)->p_type = PT_NOTE;
  expect_error(write("noload.elf", file), "no loadable");
}

}  // namespace
}  // namespace tandem::vmm
