#pragma once
// DiskArbiter: the lease as a record on storage both hosts can write ([fencing] arbiter =
// "disk", disk_path = "/shared/vm1.lease"), in the spirit of VMware FT's shared-disk
// test-and-set.
//
// The record is one 512-byte block (see docs/fencing.md, ## Arbiters):
//   magic "TNDMDISK" | version | epoch | renew counter | ttl_ms | vm_id | holder |
//   replica floor (version 2) | XXH3-64
// Every read-modify-write happens under an exclusive open-file-description lock
// (fcntl F_OFD_SETLK, waited for at most ArbiterConfig.timeout), and writes go through an
// O_DSYNC descriptor, so the record is a compare-and-swap register on the shared file.
//
// No clock is shared between the hosts. The holder bumps the renew counter on each renewal;
// a contender takes the lease over only after it has seen the counter (and holder and epoch)
// unchanged for one full ttl of its *own* clock, measured from its first sight of that value.
// The holder's own deadline ends before that (it counts from before its write, minus a margin),
// so the old holder is silent before the new one speaks. The first acquire that sees a live
// holder therefore returns Held and starts the watch; keep calling acquire (the secondary's
// loop does) and it is Granted one ttl after the last renewal it saw.
//
// A record that fails its checksum, is truncated or belongs to another VM is never
// overwritten: every call is Refused naming the problem until an operator fixes the file.
//
// The daemon never creates the file (no O_CREAT): an operator runs `tandemctl init-lease
// --disk-path PATH --vm VM_ID` once. A missing or empty file is Refused with that hint: on a
// shared filesystem that is not mounted, a file created by each host would give each host its own
// lease. The fresh record (epoch 0) is granted only after one ttl without a change, like a holder
// that stopped renewing.
#include <chrono>
#include <cstdint>
#include <string>

#include "fencing/arbiter.h"
#include "fencing/arbiters/disk_record.h"

namespace tandem::fencing {

class DiskArbiter final : public Arbiter {
 public:
  // Throws std::invalid_argument for an empty disk_path or vm_id (or a vm_id / node name
  // over 128 bytes at call time: Refused).
  explicit DiskArbiter(const ArbiterConfig& config);

  std::string describe() const override;
  Grant acquire(const std::string& node, uint64_t known_epoch) override;
  Grant renew(const std::string& node, uint64_t epoch) override;
  Grant advance(const std::string& node, uint64_t epoch) override;
  void release(const std::string& node, uint64_t epoch) override;

  static constexpr size_t kRecordBytes = disk::kRecordBytes;
  static constexpr size_t kMaxNameBytes = disk::kMaxNameBytes;

 private:
  ArbiterConfig config_;
  // The contender's watch of another holder's record: what it saw and when it first saw it.
  struct Watch {
    bool active = false;
    std::string holder;
    uint64_t epoch = 0;
    uint64_t counter = 0;
    std::chrono::steady_clock::time_point since;
  };
  Watch watch_;
};

}  // namespace tandem::fencing
