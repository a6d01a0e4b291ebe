#pragma once
// The disk arbiter's lease record (see disk_arbiter.h and docs/fencing.md, ## Arbiters): one
// 512-byte block, its encoding and checks, and the operator's `tandemctl init-lease` that
// creates the file. A small target of its own (fencing_disk_record) so tandemctl need not link
// the arbiters.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

namespace tandem::fencing::disk {

inline constexpr size_t kRecordBytes = 512;
inline constexpr size_t kMaxNameBytes = 128;

struct Record {
  uint64_t epoch = 0;  // 0: never granted (a record fresh from init_lease_file)
  uint64_t counter = 0;
  uint64_t ttl_ms = 0;
  std::string vm_id;
  std::string holder;          // "" = free (released, or never taken)
  uint64_t replica_floor = 0;  // set by advance(): acquires with a known epoch below it are refused
};
using Block = std::array<uint8_t, kRecordBytes>;

Block encode(const Record& r);
// The record, or why it cannot be trusted.
std::variant<Record, std::string> decode(const Block& b);

// Creates the lease file for `vm_id` at `path`: a fresh record (epoch 0, no holder), written
// durably, never over an existing file (an operator removes an old one on purpose). The daemon
// never creates it: a missing file can mean the shared filesystem is not mounted, and a file of
// its own on each host would give each host a lease. Throws std::invalid_argument for a bad
// vm_id and std::runtime_error naming what failed.
void init_lease_file(const std::string& path, const std::string& vm_id);

}  // namespace tandem::fencing::disk
