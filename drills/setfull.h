// SetFullChecker: the Jepsen "set-full" check for the kv guest, fed by a drill's client.
//
// Every write is `SET key value` with a key used once, so a read can be judged on its own:
//   acknowledged  the client saw `OK`: the key must be readable with that value afterwards;
//   indeterminate sent, but the reply never came (connection lost, timeout): the write may
//                 or may not have happened, either outcome is correct;
//   lost          acknowledged, but a read (during the drill or in the final sweep) said
//                 NOT_FOUND or returned another value;
//   phantom       a read returned a value that was never written to that key (or a key
//                 never written at all was found).
// An `OK` that arrives twice for one write (output is at-least-once across a failover) is
// counted as a duplicate ack and is not an error. The checker is plain bookkeeping: no I/O,
// no threads (callers serialise), so it is unit-tested on its own.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace tandem::drills {

struct SetFullCounts {
  uint64_t attempted = 0;      // SETs sent
  uint64_t acked = 0;          // distinct SETs acknowledged
  uint64_t indeterminate = 0;  // sent, never acknowledged
  uint64_t duplicate_acks = 0; // acknowledgements beyond the first for one write
  uint64_t reads = 0;          // GET replies judged (during the drill and in the final sweep)
  uint64_t acked_lost = 0;     // acknowledged writes missing or with another value
  uint64_t phantoms = 0;       // reads of a value that was never written
  uint64_t indeterminate_present = 0;  // indeterminate writes the final sweep found applied
};

class SetFullChecker {
 public:
  // A SET was sent (before its reply). Throws std::logic_error if the key was used before:
  // the check relies on one write per key.
  void write_sent(const std::string& key, const std::string& value);
  // Its `OK` arrived. A second `OK` for the same key counts as a duplicate ack.
  void write_acked(const std::string& key);
  // A GET reply for `key`: `value` is std::nullopt for NOT_FOUND. `final_sweep` marks the
  // post-drill read (only there does NOT_FOUND of an indeterminate write settle it as absent).
  void read(const std::string& key, const std::optional<std::string>& value, bool final_sweep = false);

  // Keys the final sweep must read: every key written (acknowledged or not).
  std::vector<std::string> keys_to_verify() const;
  // Acknowledged keys, for reads during the drill.
  const std::vector<std::string>& acked_keys() const { return acked_order_; }

  SetFullCounts counts() const;
  // One line per problem found ("lost: key k1 acked with v1, read NOT_FOUND"), capped.
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  struct Write {
    std::string value;
    uint32_t acks = 0;
    bool lost = false;  // reported once per key
  };
  void problem(std::string text);

  std::map<std::string, Write> writes_;
  std::vector<std::string> acked_order_;
  std::set<std::string> indeterminate_found_;
  SetFullCounts counts_;
  std::vector<std::string> problems_;
};

}  // namespace tandem::drills
