#include "fencing/arbiters/disk_record.h"

#include <xxhash.h>

#include <cstring>
#include <fmt/format.h>
#include <stdexcept>

#include "net/durable_file.h"

namespace tandem::fencing::disk {

namespace {

constexpr std::string_view kMagic = "TNDMDISK";
// Version 1: no replica floor. Version 2 (written only once an epoch was advanced, so older
// tandemds keep working until then and refuse a record they would misread): the floor at 304.
constexpr uint32_t kVersion = 1, kVersionWithFloor = 2;
// Offsets in the 512-byte block (little-endian integers).
constexpr size_t kVersionAt = 8, kEpochAt = 16, kCounterAt = 24, kTtlAt = 32, kVmLenAt = 40, kHolderLenAt = 42,
                 kVmAt = 48, kHolderAt = kVmAt + kMaxNameBytes,
                 kFloorAt = kHolderAt + kMaxNameBytes, kChecksumAt = kRecordBytes - 8;

void put(Block& b, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get(const Block& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

}  // namespace

Block encode(const Record& r) {
  Block b{};
  std::memcpy(b.data(), kMagic.data(), kMagic.size());
  put(b, kVersionAt, r.replica_floor > 0 ? kVersionWithFloor : kVersion, 4);
  put(b, kEpochAt, r.epoch, 8);
  put(b, kCounterAt, r.counter, 8);
  put(b, kTtlAt, r.ttl_ms, 8);
  put(b, kVmLenAt, r.vm_id.size(), 2);
  put(b, kHolderLenAt, r.holder.size(), 2);
  std::memcpy(b.data() + kVmAt, r.vm_id.data(), r.vm_id.size());
  std::memcpy(b.data() + kHolderAt, r.holder.data(), r.holder.size());
  put(b, kFloorAt, r.replica_floor, 8);
  put(b, kChecksumAt, XXH3_64bits(b.data(), kChecksumAt), 8);
  return b;
}

std::variant<Record, std::string> decode(const Block& b) {
  if (std::memcmp(b.data(), kMagic.data(), kMagic.size()) != 0) return std::string("bad magic (not a Tandem lease record)");
  if (get(b, kChecksumAt, 8) != XXH3_64bits(b.data(), kChecksumAt)) return std::string("checksum mismatch");
  const uint64_t version = get(b, kVersionAt, 4);
  if (version != kVersion && version != kVersionWithFloor) return fmt::format("unknown version {}", version);
  const size_t vm_len = get(b, kVmLenAt, 2), holder_len = get(b, kHolderLenAt, 2);
  if (vm_len > kMaxNameBytes || holder_len > kMaxNameBytes) {
    return std::string("name length out of range");
  }
  Record r;
  r.epoch = get(b, kEpochAt, 8);
  r.counter = get(b, kCounterAt, 8);
  r.ttl_ms = get(b, kTtlAt, 8);
  r.vm_id.assign(reinterpret_cast<const char*>(b.data() + kVmAt), vm_len);
  r.holder.assign(reinterpret_cast<const char*>(b.data() + kHolderAt), holder_len);
  if (version == kVersionWithFloor) r.replica_floor = get(b, kFloorAt, 8);
  if (r.replica_floor > r.epoch) return fmt::format("replica floor {} above the epoch {}", r.replica_floor, r.epoch);
  return r;
}

void init_lease_file(const std::string& path, const std::string& vm_id) {
  if (vm_id.empty() || vm_id.size() > kMaxNameBytes) throw std::invalid_argument("the vm id must be 1..128 bytes");
  Record fresh;
  fresh.vm_id = vm_id;
  const Block b = encode(fresh);
  net::create_file_durably(path, std::string(reinterpret_cast<const char*>(b.data()), b.size()));
}

}  // namespace tandem::fencing::disk
