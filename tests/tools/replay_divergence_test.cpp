// `tandem replay` against a consistently edited log (valid frames, one record changed or
// dropped): the replay must stop with exit status 4 and name the icount of the first audit
// whose hash differs, with both hashes. And a recording with a disk: its header holds the
// disk's content hash, and replay refuses a disk whose content differs.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "vmm-hooks/event_log.h"
#include "vmm/devices/disk_image.h"

namespace {

using namespace tandem;

struct Result {
  int status = -1;
  std::string err;
};

Result run_tandem(const std::string& args) {
  const std::string cmd = std::string(TANDEM_BIN) + " " + args + " </dev/null 2>&1 >/dev/null";
  Result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.err.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string guest(const std::string& name) { return std::string(TANDEM_GUEST_DIR) + "/" + name + ".elf"; }

class ReplayDivergence : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("tandem_div_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    log_ = (dir_ / "timer.log").string();
    const Result rec = run_tandem("record --time virtual --audit-interval 5000 --log " + log_ + " " + guest("timer"));
    ASSERT_EQ(rec.status, 0) << rec.err;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // Rewrites the log with `edit` applied to its records; returns the icount of the edit.
  template <typename Edit>
  uint64_t rewrite(Edit edit) {
    hooks::LogFileReader reader(log_);
    const log::LogHeader header = reader.header();
    std::vector<log::LogBatch> batches;
    while (auto b = reader.next()) batches.push_back(*b);
    uint64_t at = UINT64_MAX;
    for (auto& b : batches) {
      if (at == UINT64_MAX) at = edit(b);
    }
    hooks::LogFileWriter writer(log_, header);
    for (const auto& b : batches) writer.append(b);
    return at;
  }

  std::filesystem::path dir_;
  std::string log_;
};

uint64_t reported_icount(const std::string& err) {
  std::smatch m;
  if (!std::regex_search(err, m, std::regex("divergence at icount (\\d+): (.*) differs \\(log ([0-9a-f]{16}), replay ([0-9a-f]{16})\\)"))) {
    return UINT64_MAX;
  }
  EXPECT_NE(m[3].str(), m[4].str());
  return std::stoull(m[1].str());
}

TEST_F(ReplayDivergence, ChangedIdleSkipIsReportedAtTheFirstAuditAfterIt) {
  const uint64_t at = rewrite([](log::LogBatch& b) -> uint64_t {
    for (auto& r : *b.mutable_records()) {
      if (r.kind() == log::IDLE_SKIP && r.value() > 0) {
        r.set_value(r.value() + 1);
        return r.icount();
      }
    }
    return UINT64_MAX;
  });
  ASSERT_NE(at, UINT64_MAX);
  const Result rep = run_tandem("replay --log " + log_ + " " + guest("timer"));
  EXPECT_EQ(rep.status, 4) << rep.err;
  const uint64_t icount = reported_icount(rep.err);
  ASSERT_NE(icount, UINT64_MAX) << rep.err;
  EXPECT_GE(icount, at);
  EXPECT_LE(icount, (at / 5000 + 1) * 5000) << "not the first audit after the change";
}

TEST_F(ReplayDivergence, DroppedRecordIsReported) {
  const uint64_t at = rewrite([](log::LogBatch& b) -> uint64_t {
    for (int i = 0; i < b.records_size(); ++i) {
      if (b.records(i).kind() == log::IDLE_SKIP && b.records(i).value() > 0) {
        const uint64_t icount = b.records(i).icount();
        b.mutable_records()->DeleteSubrange(i, 1);
        return icount;
      }
    }
    return UINT64_MAX;
  });
  ASSERT_NE(at, UINT64_MAX);
  const Result rep = run_tandem("replay --log " + log_ + " " + guest("timer"));
  EXPECT_EQ(rep.status, 4) << rep.err;
  // Without its idle skip the guest idles where the log has nothing: caught at that icount.
  EXPECT_NE(rep.err.find("divergence at icount " + std::to_string(at)), std::string::npos) << rep.err;
}

TEST_F(ReplayDivergence, NoVerifySkipsAuditsButStillRuns) {
  const Result rep = run_tandem("replay --no-verify --log " + log_ + " " + guest("timer"));
  EXPECT_EQ(rep.status, 0) << rep.err;
}

// The header's disk_digest is DiskImage::content_hash() (cached block hashes, not a read of
// the image): replay accepts a copy of the disk and refuses it once one byte changed.
TEST(ReplayDisk, HeaderHoldsTheDiskContentHashAndReplayRefusesAnotherDisk) {
  const auto dir = std::filesystem::temp_directory_path() / ("tandem_replay_disk_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string disk = (dir / "disk.img").string(), copy = (dir / "copy.img").string();
  const std::string log = (dir / "disk.log").string();
  {
    std::ofstream out(disk, std::ios::binary);
    for (int i = 0; i < (1 << 20); ++i) out.put(static_cast<char>(i % 251 == 0 ? i / 251 : 0));
  }
  std::filesystem::copy_file(disk, copy);
  const Result rec = run_tandem("record --time virtual --disk " + disk + " --log " + log + " " + guest("timer"));
  ASSERT_EQ(rec.status, 0) << rec.err;

  const log::LogHeader header = hooks::LogFileReader(log).header();
  EXPECT_EQ(header.config().disk_bytes(), 1u << 20);
  EXPECT_NE(header.config().disk_digest(), 0u);
  EXPECT_EQ(header.config().disk_digest(), vmm::DiskImage(copy).content_hash());
  EXPECT_EQ(header.config().disk_digest(), vmm::DiskImage(copy).content_hash_uncached());

  Result rep = run_tandem("replay --disk " + copy + " --log " + log + " " + guest("timer"));
  EXPECT_EQ(rep.status, 0) << rep.err;
  {
    std::fstream edit(copy, std::ios::binary | std::ios::in | std::ios::out);
    edit.seekp(700'001);
    edit.put('x');
  }
  rep = run_tandem("replay --disk " + copy + " --log " + log + " " + guest("timer"));
  EXPECT_EQ(rep.status, 2) << rep.err;
  EXPECT_NE(rep.err.find("disk content differs"), std::string::npos) << rep.err;
  std::filesystem::remove_all(dir);
}

}  // namespace
