#include "replicator/epoch_store.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>

namespace tandem::replicator {

EpochStore::EpochStore(std::string state_dir)
    : dir_(std::move(state_dir)), path_(dir_.empty() ? "" : dir_ + "/epoch") {}

std::optional<uint64_t> EpochStore::load() const {
  if (path_.empty()) return std::nullopt;
  std::ifstream in(path_);
  uint64_t e = 0;
  if (in >> e && e > 0) return e;
  return std::nullopt;
}

void EpochStore::store(uint64_t epoch) const {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  const std::string tmp = path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << epoch << "\n";
  }
  std::filesystem::rename(tmp, path_, ec);
  if (ec) spdlog::warn("epoch {} not kept in {}: {}", epoch, path_, ec.message());
}

}  // namespace tandem::replicator
