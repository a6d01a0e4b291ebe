#include "fencing/arbiters/disk_arbiter.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

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

using disk::Block;
using disk::Record;

// The lease file is missing: refused (never created here, see disk_record.h).
class MissingFile : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The lease file opened and exclusively locked for one read-modify-write.
class LockedFile {
 public:
  // Unreachable-worthy failures throw std::runtime_error.
  LockedFile(const std::string& path, milliseconds timeout) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_DSYNC | O_CLOEXEC);
    if (fd_ < 0 && errno == ENOENT) {
      throw MissingFile(fmt::format("lease file {} does not exist (is the shared filesystem mounted? the daemon never "
                                    "creates it: `tandemctl init-lease --disk-path {} --vm VM_ID` does, once)",
                                    path, path));
    }
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

  // The record, or why it is corrupt.
  std::variant<Record, std::string> read() {
    Block b{};
    size_t got = 0;
    while (got < b.size()) {
      const ssize_t n = ::pread(fd_, b.data() + got, b.size() - got, static_cast<off_t>(got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw std::runtime_error(fmt::format("cannot read {}: {}", path_, std::strerror(errno)));
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got == 0) return std::string("empty (not initialised: `tandemctl init-lease` writes a fresh record)");
    if (got < b.size()) return fmt::format("truncated ({} of {} bytes)", got, b.size());
    auto decoded = disk::decode(b);
    if (auto* r = std::get_if<Record>(&decoded)) return *r;
    return std::get<std::string>(decoded);
  }

  void write(const Record& r) {
    const Block b = disk::encode(r);
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
    Record record = std::get<Record>(content);
    if (record.vm_id != config.vm_id) {
      return make(Grant::Outcome::Refused, record,
                  fmt::format("lease record {} belongs to vm {}, not {}", config.disk_path, record.vm_id, config.vm_id));
    }
    return body(file, record);
  } catch (const MissingFile& e) {
    return {Grant::Outcome::Refused, 0, milliseconds(0), "", e.what()};
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
    if (record.holder.empty() && record.epoch > 0) return take("the lease was released");

    // Another holder, or a fresh record (epoch 0, from `tandemctl init-lease`): wait for one full
    // ttl (ours, counted on our clock) without a change. A fresh record may be a lease file just
    // re-created under a holder that still runs on the old one: its renewals are refused from
    // now on, and it stops releasing output within its ttl, before this grant.
    const bool fresh = record.epoch == 0;
    const auto now = Clock::now();
    const milliseconds ttl = fresh ? std::max(lease, milliseconds(record.ttl_ms)) : milliseconds(record.ttl_ms);
    if (!watch_.active || watch_.holder != record.holder || watch_.epoch != record.epoch ||
        watch_.counter != record.counter) {
      watch_ = {true, record.holder, record.epoch, record.counter, now};
      return make(Grant::Outcome::Held, record,
                  fresh ? fmt::format("fresh lease record: granted after {} ms without a change", ttl.count())
                        : fmt::format("held by {} under epoch {} (renew counter {}); taking over after {} ms without "
                                      "renewals",
                                      record.holder, record.epoch, record.counter, ttl.count()));
    }
    const auto quiet = std::chrono::duration_cast<milliseconds>(now - watch_.since);
    if (quiet < ttl) {
      return make(Grant::Outcome::Held, record,
                  fresh ? fmt::format("fresh lease record: unchanged for {} of {} ms", quiet.count(), ttl.count())
                        : fmt::format("held by {} under epoch {}: no renewal for {} of {} ms", record.holder,
                                      record.epoch, quiet.count(), ttl.count()));
    }
    if (fresh) return take(fmt::format("first holder (fresh record unchanged for {} ms)", quiet.count()));
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
