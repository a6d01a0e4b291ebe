// Checkpoint reader (checkpoint/reader.cpp): checkpoint::inspect and checkpoint::apply of one
// whole stream (a `tandem run --restore` file, the replication link's checkpoints) onto a
// machine of kMemBytes RAM with a kDiskBytes disk, the size of the seeds (fuzz/make_seeds.cpp).
// Each input is applied as is, then with its hashes recomputed (fuzz/checkpoint_fixup.h).
#include <string>

#include "checkpoint/checkpoint.h"
#include "fuzz/checkpoint_fixup.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/seed_machine.h"

namespace {

void apply(const std::string& stream) {
  static tandem::fuzz::SeedMachine m;
  try {
    (void)tandem::checkpoint::inspect(stream);
  } catch (const tandem::checkpoint::CheckpointError&) {
  }
  try {
    tandem::checkpoint::apply(m.machine(), stream);
    (void)m.machine().state_hash();
  } catch (const tandem::checkpoint::CheckpointError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string raw(reinterpret_cast<const char*>(data), size);
  apply(raw);
  const std::string fixed = tandem::fuzz::fix_checkpoint_hashes(raw);
  if (fixed != raw) apply(fixed);
  return 0;
}
