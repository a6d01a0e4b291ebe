#include "fencing/arbiters/disk_arbiter.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <xxhash.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <optional>
#include <stdexcept>
#include <thread>
#include <variant>

namespace tandem::fencing {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kMagic = "TNDMDISK";
// Version 1: no replica floor. Version 2 (written only once an epoch was advanced, so older
// tandemds keep working until then and refuse a record they would misread): the floor at 304.
constexpr uint32_t kVersion = 1, kVersionWithFloor = 2;
// Offsets in the 512-byte block (little-endian integers).
constexpr size_t kVersionAt = 8, kEpochAt = 16, kCounterAt = 24, kTtlAt = 32, kVmLenAt = 40, kHolderLenAt = 42,
                 kVmAt = 48, kHolderAt = kVmAt + DiskArbiter::kMaxNameBytes,
                 kFloorAt = kHolderAt + DiskArbiter::kMaxNameBytes, kChecksumAt = DiskArbiter::kRecordBytes - 8;

struct Record {
  uint64_t epoch = 0;
  uint64_t counter = 0;
  uint64_t ttl_ms = 0;
  std::string vm_id;
  std::string holder;  // "" = free (released, or never taken)
  uint64_t replica_floor = 0;  // set by advance(): acquires with a known epoch below it are refused
};
using Block = std::array<uint8_t, DiskArbiter::kRecordBytes>;

void put(Block& b, size_t at, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get(const Block& b, size_t at, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | b[at + i];
  return v;
}

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

// The record, or why it cannot be trusted.
std::variant<Record, std::string> decode(const Block& b) {
  if (std::memcmp(b.data(), kMagic.data(), kMagic.size()) != 0) return std::string("bad magic (not a Tandem lease record)");
  if (get(b, kChecksumAt, 8) != XXH3_64bits(b.data(), kChecksumAt)) return std::string("checksum mismatch");
  const uint64_t version = get(b, kVersionAt, 4);
  if (version != kVersion && version != kVersionWithFloor) return fmt::format("unknown version {}", version);
  const size_t vm_len = get(b, kVmLenAt, 2), holder_len = get(b, kHolderLenAt, 2);
  if (vm_len > DiskArbiter::kMaxNameBytes || holder_len > DiskArbiter::kMaxNameBytes) {
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

// The lease file opened and exclusively locked for one read-modify-write.
class LockedFile {
 public:
  // Unreachable-worthy failures throw std::runtime_error.
  LockedFile(const std::string& path, milliseconds timeout) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_DSYNC | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    const auto deadline = Clock::now() + timeout;
    // OFD locks belong to this open file description, so two arbiters in one process exclude
    // each other too (classic POSIX locks would not).
    while (::fcntl(fd_, F_OFD_SETLK, &lock) != 0) {
      if ((errno != EAGAIN && errno != EACCES && errno != EINTR) || Clock::now() >= deadline) {
        const std::string why = errno == EAGAIN || errno == EACCES
                                    ? fmt::format("{} stayed locked by another process for {} ms", path, timeout.count())
                                    : fmt::format("cannot lock {}: {}", path, std::strerror(errno));
        ::close(fd_);
        throw std::runtime_error(why);
      }
      std::this_thread::sleep_for(milliseconds(2));
    }
  }
  ~LockedFile() { ::close(fd_); }  // closing drops the lock
  LockedFile(const LockedFile&) = delete;
  LockedFile& operator=(const LockedFile&) = delete;

  // nullopt = empty file (no record yet); a string = corrupt.
  std::variant<std::monostate, Record, std::string> read() {
    Block b{};
    size_t got = 0;
    while (got < b.size()) {
      const ssize_t n = ::pread(fd_, b.data() + got, b.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error(fmt::format("cannot read {}: {}", path_, std::strerror(errno)));
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got == 0) return std::monostate{};
    if (got < b.size()) return fmt::format("truncated ({} of {} bytes)", got, b.size());
    auto decoded = decode(b);
    if (auto* r = std::get_if<Record>(&decoded)) return *r;
    return std::get<std::string>(decoded);
  }

  void write(const Record& r) {
    const Block b = encode(r);
    const ssize_t n = ::pwrite(fd_, b.data(), b.size(), 0);  // O_DSYNC: on stable storage when it returns
    if (n != static_cast<ssize_t>(b.size())) {
      throw std::runtime_error(fmt::format("cannot write {}: {}", path_, n < 0 ? std::strerror(errno) : "short write"));
    }
  }

 private:
  std::string path_;
  int fd_ = -1;
};

Grant make(Grant::Outcome outcome, const Record& r, std::string why, milliseconds ttl = milliseconds(0)) {
  return {outcome, r.epoch, ttl, r.holder, std::move(why)};
}

}  // namespace

DiskArbiter::DiskArbiter(const ArbiterConfig& config) : config_(config) {
  if (config.disk_path.empty()) throw std::invalid_argument("the disk arbiter needs disk_path");
  if (config.vm_id.empty()) throw std::invalid_argument("the disk arbiter needs the VM id ([vm] id)");
  if (config.vm_id.size() > kMaxNameBytes) throw std::invalid_argument("vm id longer than 128 bytes");
}

std::string DiskArbiter::describe() const { return "disk " + config_.disk_path; }

namespace {
// Everything shared by the three calls: open + lock, read, refuse a corrupt or foreign record.
template <typename Body>
Grant with_record(const ArbiterConfig& config, const std::string& node, Body body) {
  if (node.empty() || node.size() > DiskArbiter::kMaxNameBytes) {
    return {Grant::Outcome::Refused, 0, milliseconds(0), "", "node name must be 1..128 bytes"};
  }
  try {
    LockedFile file(config.disk_path, config.timeout);
    auto content = file.read();
    if (auto* corrupt = std::get_if<std::string>(&content)) {
      return {Grant::Outcome::Refused, 0, milliseconds(0), "",
              fmt::format("lease record {} is corrupt: {} (left as is: an operator must check it)", config.disk_path,
                          *corrupt)};
    }
    const bool fresh = std::holds_alternative<std::monostate>(content);
    Record record = fresh ? Record{} : std::get<Record>(content);
    if (fresh) record.vm_id = config.vm_id;
    if (record.vm_id != config.vm_id) {
      return make(Grant::Outcome::Refused, record,
                  fmt::format("lease record {} belongs to vm {}, not {}", config.disk_path, record.vm_id, config.vm_id));
    }
    return body(file, record);
  } catch (const std::exception& e) {
    return {Grant::Outcome::Unreachable, 0, milliseconds(0), "", e.what()};
  }
}
}  // namespace

Grant DiskArbiter::acquire(const std::string& node, uint64_t known_epoch) {
  return with_record(config_, node, [&](LockedFile& file, Record record) {
    const milliseconds lease = config_.lease;
    const auto take = [&](const std::string& why) {
      const Record before = record;
      record.epoch = std::max(record.epoch, known_epoch) + 1;
      record.holder = node;
      record.counter += 1;
      record.ttl_ms = static_cast<uint64_t>(lease.count());
      file.write(record);
      watch_ = {};
      spdlog::info("disk lease {}: epoch {} taken by {} ({})", config_.disk_path, record.epoch, node, why);
      return make(Grant::Outcome::Granted, record, why, lease);
    };
    if (record.holder == node) {
      if (known_epoch > record.epoch) return take("known epoch is newer than the record's");
      record.counter += 1;
      record.ttl_ms = static_cast<uint64_t>(lease.count());
      file.write(record);
      watch_ = {};
      return make(Grant::Outcome::Granted, record, "renewed", lease);
    }
    if (known_epoch < record.replica_floor) {
      return make(Grant::Outcome::Refused, record,
                  fmt::format("stale replica: epoch {} < {} (advanced by the primary without this node): resync as "
                              "a secondary",
                              known_epoch, record.replica_floor));
    }
    if (record.holder.empty()) return take(record.epoch == 0 ? "first holder" : "the lease was released");

    // Another holder: wait for one full ttl (ours, counted on our clock) without a renewal.
    const auto now = Clock::now();
    const milliseconds ttl(record.ttl_ms);
    if (!watch_.active || watch_.holder != record.holder || watch_.epoch != record.epoch ||
        watch_.counter != record.counter) {
      watch_ = {true, record.holder, record.epoch, record.counter, now};
      return make(Grant::Outcome::Held, record,
                  fmt::format("held by {} under epoch {} (renew counter {}); taking over after {} ms without renewals",
                              record.holder, record.epoch, record.counter, ttl.count()));
    }
    const auto quiet = std::chrono::duration_cast<milliseconds>(now - watch_.since);
    if (quiet < ttl) {
      return make(Grant::Outcome::Held, record,
                  fmt::format("held by {} under epoch {}: no renewal for {} of {} ms", record.holder, record.epoch,
                              quiet.count(), ttl.count()));
    }
    return take(fmt::format("{} did not renew epoch {} for {} ms", record.holder, record.epoch, quiet.count()));
  });
}

Grant DiskArbiter::renew(const std::string& node, uint64_t epoch) {
  return with_record(config_, node, [&](LockedFile& file, Record record) {
    if (record.epoch > epoch) {
      return make(Grant::Outcome::Refused, record,
                  fmt::format("fenced: epoch {} granted to {}", record.epoch,
                              record.holder.empty() ? std::string("(released)") : record.holder));
    }
    if (record.epoch < epoch) {
      return make(Grant::Outcome::Refused, record,
                  fmt::format("epoch {} was never granted (newest: {})", epoch, record.epoch));
    }
    if (record.holder != node) {
      return make(Grant::Outcome::Refused, record,
                  record.holder.empty() ? fmt::format("the lease under epoch {} was released", epoch)
                                        : fmt::format("epoch {} is held by {}", epoch, record.holder));
    }
    record.counter += 1;
    record.ttl_ms = static_cast<uint64_t>(config_.lease.count());
    file.write(record);
    return make(Grant::Outcome::Granted, record, "renewed", config_.lease);
  });
}

Grant DiskArbiter::advance(const std::string& node, uint64_t epoch) {
  return with_record(config_, node, [&](LockedFile& file, Record record) {
    const bool repeated = record.holder == node && record.epoch == epoch + 1 && record.replica_floor == epoch + 1;
    // The compare of the compare-and-swap, under the lock: this node holds exactly `epoch`
    // (or already advanced from it: a retry after a lost answer is granted again).
    if (!repeated && (record.epoch != epoch || record.holder != node)) {
      return make(Grant::Outcome::Refused, record,
                  record.epoch > epoch ? fmt::format("fenced: epoch {} granted to {}", record.epoch,
                                                     record.holder.empty() ? std::string("(released)") : record.holder)
                                       : fmt::format("cannot advance: {} does not hold epoch {}", node, epoch));
    }
    record.epoch = epoch + 1;
    record.replica_floor = record.epoch;
    record.counter += 1;
    record.ttl_ms = static_cast<uint64_t>(config_.lease.count());
    file.write(record);
    if (!repeated)
      spdlog::info("disk lease {}: {} advanced epoch {} -> {}: older replicas are refused", config_.disk_path, node,
                   epoch, record.epoch);
    return make(Grant::Outcome::Granted, record, fmt::format("epoch advanced to {}", record.epoch), config_.lease);
  });
}

void DiskArbiter::release(const std::string& node, uint64_t epoch) {
  const Grant g = with_record(config_, node, [&](LockedFile& file, Record record) {
    if (record.epoch != epoch || record.holder != node) {
      return make(Grant::Outcome::Refused, record, "not the holder of that epoch");
    }
    record.holder.clear();
    record.counter += 1;
    file.write(record);
    return make(Grant::Outcome::Granted, record, "released");
  });
  if (!g.granted()) spdlog::warn("disk lease {}: release of epoch {}: {}", config_.disk_path, epoch, g.why);
}

}  // namespace tandem::fencing
