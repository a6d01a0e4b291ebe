#pragma once
// fencing::LeaseKeeper: holds this node's lease at the arbiter and says whether output may
// leave the node right now.
//
// One thread of its own (never the VM loop) makes every arbiter call:
//   acquiring — acquire() every lease/4 until Granted (a booting primary, or a secondary
//               that suspects its primary: the old lease must lapse first);
//   holding   — renew() every lease/3 (shorter when the self-fencing window needs it);
//   fenced    — a renewal was Refused or found the lease Held by another node, or this
//               node yielded: it never releases output again (until a new acquire).
//
// Self-fencing deadline (docs/fencing.md, "Leases and self-fencing"): with `sent` the
// moment the last *granted* request left this node,
//   output_deadline = sent + ttl * (1 - 0.05) - 2 * arbiter_timeout
// The arbiter counts ttl from when it received that request (later than `sent`), the 5 %
// absorb clock-rate differences between the hosts, and 2 * timeout cover a release that
// was already decided (gate check) but still being written, plus scheduling delay. A grant
// with ttl 0 (none, STONITH) does not lapse.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "fencing/arbiter.h"

namespace tandem::fencing {

class LeaseKeeper {
 public:
  using Clock = std::chrono::steady_clock;

  // Builds the arbiter with make_arbiter (throws std::invalid_argument like it).
  LeaseKeeper(const ArbiterConfig& config, std::string node_name);
  // With an arbiter built elsewhere (tests; several keepers sharing one arbiter process).
  LeaseKeeper(std::unique_ptr<Arbiter> arbiter, const ArbiterConfig& config, std::string node_name);
  ~LeaseKeeper();  // stop()
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  static Clock::time_point output_deadline(Clock::time_point sent, std::chrono::milliseconds ttl,
                                           std::chrono::milliseconds timeout);

  void start();
  void stop();  // ends the thread after the call in progress (<= arbiter timeout); no release

  // Tries to become the holder: acquire() every lease/4 until Granted, then renews.
  // `on_granted` runs on the keeper's thread once, right after the grant. Clears fenced().
  // With `on_refused`, a Refused acquire (a stale replica: never grantable) stops acquiring
  // and runs it once instead of retrying. Only a grant raises the known epoch: a Held or
  // Refused answer's epoch must not make a stale replica look current.
  void acquire(uint64_t known_epoch, std::function<void(const Grant&)> on_granted = {},
               std::function<void(const Grant&)> on_refused = {});
  // The holder moves its epoch forward (Arbiter::advance) instead of its next renewal,
  // retrying while the arbiter is unreachable; `on_advanced` runs once on the keeper's
  // thread with the grant (the new epoch). Refused or Held fences the node (on_fenced).
  void advance(std::function<void(const Grant&)> on_advanced);
  // Stops acquiring or renewing, without telling the arbiter (a secondary that gives up).
  void cancel();
  // The holder gives the lease up (planned handover, clean stop): no more output from here
  // at once, then Arbiter::release (blocks up to the arbiter timeout).
  void release();
  // The holder stops renewing on purpose (it lost its secondary on every path and lets the
  // peer take over): output stops now and fenced() is true with `why`.
  void yield(const std::string& why);

  bool may_release_output(Clock::time_point now = Clock::now()) const;
  bool fenced() const;       // latched; see the class comment
  bool holding() const;      // holds (or renews) a lease, possibly past its local deadline
  bool acquiring() const;
  int64_t lease_ms_left(Clock::time_point now = Clock::now()) const;  // -1: no lease; ttl 0: INT32_MAX
  uint64_t epoch() const;    // of the current/last grant (0: none yet)
  std::string describe() const;
  std::string last_outcome() const;  // "granted epoch 4 (ttl 2000 ms)", "held by a: ...", ...
  std::chrono::milliseconds renew_interval() const;

  // Called (on the keeper's thread) when the node becomes fenced; set before start().
  std::function<void(const std::string& why)> on_fenced;

 private:
  enum class Mode { Idle, Acquiring, Holding, Fenced };
  void run();
  void note(const Grant& g, const char* what);

  std::unique_ptr<Arbiter> arbiter_;
  ArbiterConfig config_;
  std::string node_;
  std::string description_;

  mutable std::mutex mutex_;
  std::mutex call_mutex_;  // one arbiter call at a time (the keeper thread or release())
  std::condition_variable cv_;
  Mode mode_ = Mode::Idle;
  bool stopping_ = false;
  uint64_t generation_ = 0;  // bumped by every acquire/cancel/release/yield: stale results are dropped
  uint64_t known_epoch_ = 0;
  uint64_t epoch_ = 0;
  bool lapses_ = true;       // false for a ttl-0 grant
  Clock::time_point deadline_{};
  std::string last_;
  std::function<void(const Grant&)> on_granted_;
  std::function<void(const Grant&)> on_refused_;
  std::function<void(const Grant&)> on_advanced_;  // set: the next call is advance(), not renew()
  std::thread thread_;
};

}  // namespace tandem::fencing
