#pragma once
// The standalone VM sessions behind `tandem`: run a guest, record it to an event log, replay
// a log. tools/tandem.cpp parses the command line into these options and calls one of
// run_session / record_session / replay_session; everything between (booting, consoles,
// snapshots, the log, statuses and the lines printed at the end) lives here.
#include <csignal>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "vmm/boot_spec.h"
#include "vmm/machine.h"

namespace tandem::runner {

// Exit statuses (docs/tandem-run.md, docs/record-replay.md). Besides these: the guest's own
// status through the test finisher (0 pass or reset, else its failure code, never 0).
inline constexpr int kStatusBadInput = 2;     // bad command line, image, disk, snapshot or log
inline constexpr int kStatusLimit = 3;        // --max-instructions reached
inline constexpr int kStatusIdle = 4;         // the guest waits for input that can never come
inline constexpr int kStatusDivergence = 4;   // replay: the machine left the recorded path
inline constexpr int kStatusInterrupted = 130;
inline constexpr int kStatusCpuMismatch = 5;  // --cpu check: the engines disagree

// Bad input: one line on stderr, status kStatusBadInput.
class BadInput : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What every session needs to build its machine.
struct MachineOptions {
  vmm::BootSpec boot;
  uint64_t mem_mib = vmm::kDefaultMemBytes >> 20;
  std::string disk;
  std::optional<uint64_t> max_instructions;
  bool stats = false;
  bool state_hash = false;
  // --cpu: "interp" or "jit" (docs/translator.md); `tandem run` also takes "check": the
  // guest on both engines side by side, state hashes compared every check_every instructions.
  std::string cpu = "interp";
  uint64_t check_every = 1'000'000;
};

struct RunOptions {
  MachineOptions machine;
  std::string save_path;
  std::optional<uint64_t> save_at;
  std::string restore_path;
  uint64_t poll_interval = 1u << 20;
  std::string console = "stdio";
  std::string dump_dtb;
  std::string net;  // --net SPEC (hostnet/spec.h); empty: no NIC
};

struct RecordOptions {
  MachineOptions machine;
  std::string log_path;
  uint64_t poll_interval = 1u << 20;
  std::string console = "stdio";
  uint64_t audit_interval = 10'000'000;
  std::string time = "wall";
  std::string net;  // as for run; received frames are logged, so a replay needs no network
};

struct ReplayOptions {
  MachineOptions machine;
  std::string log_path;
  bool verify = true;
};

// Each returns the process exit status; throws BadInput for bad input. `interrupted` is
// set by the caller's SIGINT/SIGTERM handler: every session stops soon after it is set
// (kStatusInterrupted), also a replay of a guest that never waits.
int run_session(const RunOptions& options, const volatile std::sig_atomic_t* interrupted);
int record_session(const RecordOptions& options, const volatile std::sig_atomic_t* interrupted);
int replay_session(const ReplayOptions& options, const volatile std::sig_atomic_t* interrupted);

}  // namespace tandem::runner
