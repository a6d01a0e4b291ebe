// KvWorkload: the drill's checking client. On its own thread it drives the kv guest with
// `SET key value` (a fresh key each time) and `GET` of acknowledged keys, and feeds every
// outcome to a SetFullChecker. When a reply is late or the connection breaks, it moves on
// to whichever node serves the console (a secondary has no console; a frozen primary
// accepts but never answers). The guest has one console, so a new connection can first
// receive output meant for an earlier one (held back by the output gate, or repeated after
// a failover: output is at-least-once). A new connection is therefore synchronised with a
// probe whose reply nobody else can produce (`SET p token`, `GET p` → token, `DEL p`);
// lines before the token are not judged.
//
// Abandoned connections are kept open and watched: a line that arrives on one later is a
// reply released by a node the client had given up on — evidence of an old primary that
// kept talking. Every reply is time-stamped with the slot it came from.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "drills/kv_client.h"
#include "drills/monitor.h"
#include "drills/setfull.h"

namespace tandem::drills {

struct WorkloadOptions {
  std::string key_prefix = "k";                       // keys are PREFIX + counter
  uint64_t seed = 1;
  std::chrono::milliseconds op_interval{5};           // pause between commands (bounds the key count)
  std::chrono::milliseconds reply_timeout{800};       // a reply later than this: move to another node
  std::chrono::milliseconds connect_timeout{300};
};

struct ReplyEvent {
  Clock::time_point at;
  int slot = 0;
  bool abandoned = false;  // arrived on a connection the client had given up on
  std::string line;
};

class KvWorkload {
 public:
  KvWorkload(std::array<Endpoint, 2> consoles, int preferred_slot, WorkloadOptions options);
  ~KvWorkload();  // stop()
  KvWorkload(const KvWorkload&) = delete;
  KvWorkload& operator=(const KvWorkload&) = delete;

  void start();
  void stop();  // stops sending; idempotent

  // After stop(): reads back every key written, from whichever node serves, within
  // `timeout`; then deletes them (so a long run stays under the guest's key limit).
  // Returns "" or the reason it could not finish.
  std::string final_sweep(std::chrono::milliseconds timeout);
  // Watches the abandoned connections for `duration` more (after the drill's fault ended).
  void drain_abandoned(std::chrono::milliseconds duration);

  uint64_t acked() const;
  std::vector<ReplyEvent> replies() const;
  SetFullCounts counts() const;
  std::vector<std::string> problems() const;  // checker problems + unexpected replies
  uint64_t unexpected() const;
  uint64_t repeated_lines() const;

 private:
  void run();
  bool ensure_connected(Clock::time_point deadline);
  bool try_slot(int slot);
  void abandon();
  void poll_abandoned();
  void record(int slot, const std::string& line, bool abandoned);
  std::optional<std::string> command(const std::string& line);

  std::array<Endpoint, 2> consoles_;
  WorkloadOptions options_;
  std::mt19937_64 rng_;
  int preferred_slot_;
  int slot_ = -1;  // the slot of conn_
  KvConnection conn_;
  std::vector<std::pair<int, KvConnection>> abandoned_;
  uint64_t counter_ = 0;
  uint64_t probes_ = 0;

  mutable std::mutex mutex_;
  SetFullChecker checker_;
  std::vector<ReplyEvent> replies_;
  std::vector<std::string> extra_problems_;
  uint64_t unexpected_ = 0;
  uint64_t repeated_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace tandem::drills
