// net/durable_file: replace, create-only-once and bounded reads on real files.
#include "net/durable_file.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tandem::net {
namespace {

namespace fs = std::filesystem;

class DurableFile : public ::testing::Test {
 protected:
  DurableFile() {
    dir = fs::temp_directory_path() / ("td_durable_" + std::to_string(::getpid()) + "_" +
                                       ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  ~DurableFile() override { fs::remove_all(dir); }
  fs::path dir;
};

TEST_F(DurableFile, ReplacesAtomicallyAndLeavesNoTemporaryFile) {
  const std::string path = (dir / "f").string();
  EXPECT_FALSE(read_small_file(path, 100));  // missing
  write_file_durably(path, "one");
  write_file_durably(path, "two");
  EXPECT_EQ(read_small_file(path, 100), "two");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  EXPECT_THROW(write_file_durably((dir / "no-dir" / "f").string(), "x"), std::runtime_error);
}

TEST_F(DurableFile, CreateRefusesAnExistingFile) {
  const std::string path = (dir / "f").string();
  create_file_durably(path, "first");
  EXPECT_THROW(create_file_durably(path, "second"), std::runtime_error);
  EXPECT_EQ(read_small_file(path, 100), "first");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
}

TEST_F(DurableFile, AnOversizeFileIsNotRead) {
  const std::string path = (dir / "big").string();
  std::ofstream(path) << std::string(101, 'x');
  EXPECT_THROW(read_small_file(path, 100), FileTooLarge);
  EXPECT_EQ(read_small_file(path, 101)->size(), 101u);
}

}  // namespace
}  // namespace tandem::net
