#include "replicator/epoch_store.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <filesystem>
#include <fmt/format.h>

#include "net/durable_file.h"

namespace tandem::replicator {

EpochStore::EpochStore(std::string state_dir)
    : dir_(std::move(state_dir)), path_(dir_.empty() ? "" : dir_ + "/epoch") {}

std::optional<uint64_t> EpochStore::load() const {
  if (path_.empty()) return std::nullopt;
  const auto refuse = [&](const std::string& why) {
    return EpochFileError(fmt::format("epoch file {} {} (refusing to start: an epoch older than the one this node has "
                                      "seen could make it act as a stale primary; restore the file or remove it "
                                      "deliberately)",
                                      path_, why));
  };
  std::optional<std::string> text;
  try {
    text = net::read_small_file(path_, 64);
  } catch (const std::exception& e) {
    throw refuse(fmt::format("cannot be read: {}", e.what()));
  }
  if (!text) return std::nullopt;
  std::string_view digits(*text);
  if (!digits.empty() && digits.back() == '\n') digits.remove_suffix(1);
  uint64_t epoch = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), epoch);
  if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() || epoch == 0) {
    std::string shown;
    for (char c : text->substr(0, 32)) shown.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    throw refuse(fmt::format("is corrupt: expected one positive decimal number, found \"{}\"", shown));
  }
  return epoch;
}

bool EpochStore::store(uint64_t epoch) const {
  if (path_.empty()) return true;
  try {
    std::filesystem::create_directories(dir_);
    net::write_file_durably(path_, fmt::format("{}\n", epoch));
    return true;
  } catch (const std::exception& e) {
    spdlog::error("epoch {} not kept in {}: {}", epoch, path_, e.what());
    return false;
  }
}

}  // namespace tandem::replicator
