// net::load_psk: the key's bytes without trailing line breaks; a missing, short, oversize,
// non-regular or group/world-readable file is refused with a message naming it.
#include "net/psk.h"

#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;
using tandem::net::load_psk;

class PskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = fs::temp_directory_path() / ("tandem-psk-" + std::to_string(::getpid()));
    fs::create_directories(dir);
  }
  void TearDown() override { fs::remove_all(dir); }
  std::string write(const std::string& name, const std::string& bytes, mode_t mode = 0600) {
    const std::string path = (dir / name).string();
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    ::chmod(path.c_str(), mode);
    return path;
  }
  std::string error_of(const std::string& path) {
    try {
      load_psk(path);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir;
};

TEST_F(PskTest, TrailingLineBreaksAreDropped) {
  const std::string key(64, 'a');
  EXPECT_EQ(load_psk(write("k", key + "\r\n\n")), key);
  EXPECT_EQ(load_psk(write("raw", std::string(16, '\0'))), std::string(16, '\0')) << "binary keys are kept as is";
}

TEST_F(PskTest, BadFilesAreRefusedByName) {
  EXPECT_NE(error_of((dir / "missing").string()).find("No such file"), std::string::npos);
  const std::string short_key = write("short", "tooshort\n");
  const std::string e = error_of(short_key);
  EXPECT_NE(e.find("\"" + short_key + "\" holds 8 bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("at least 16"), std::string::npos) << e;
  EXPECT_NE(error_of(write("big", std::string(5000, 'x'))).find("more than 4096"), std::string::npos);
  fs::create_directories(dir / "keydir");
  EXPECT_NE(error_of((dir / "keydir").string()).find("not a regular file"), std::string::npos);
}

TEST_F(PskTest, AKeyOthersCanReadIsRefused) {
  for (mode_t mode : {0644, 0640, 0604, 0660}) {
    const std::string path = write("shared", std::string(32, 'k'), mode);
    const std::string e = error_of(path);
    EXPECT_NE(e.find("readable by its group or others"), std::string::npos) << std::oct << mode << ": " << e;
    EXPECT_NE(e.find("chmod 600"), std::string::npos) << e;
  }
  EXPECT_EQ(load_psk(write("private", std::string(32, 'k'), 0400)), std::string(32, 'k'));
}

}  // namespace
