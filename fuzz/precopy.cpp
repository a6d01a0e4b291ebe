// The pre-copy part stream (replicator/precopy + checkpoint/): what a secondary does with
// the SyncChunk messages of an initial sync, as node.cpp's apply_sync_chunk: each message
// must be next in order (SyncSequence), hold an incremental part (the closing one with the
// core state), and is applied to the machine (kMemBytes RAM, kDiskBytes disk).
// Input: messages, each a u32 LE length and a serialized wire::SyncChunk. Each part's
// checkpoint hashes are recomputed (fuzz/checkpoint_fixup.h) unless the first input byte's
// low bit is set (then they are kept, as a hostile peer would send them).
#include <string>

#include "checkpoint/checkpoint.h"
#include "fuzz/checkpoint_fixup.h"
#include "fuzz/fuzz_support.h"
#include "fuzz/seed_machine.h"
#include "proto/replication.pb.h"
#include "replicator/precopy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tandem::fuzz::SeedMachine m;
  tandem::fuzz::Cursor in(data, size);
  const bool keep_hashes = in.take<uint8_t>() & 1;
  tandem::replicator::SyncSequence sequence;
  while (!in.empty()) {
    const auto length = in.take<uint32_t>();
    const std::string_view bytes = in.bytes(length);
    tandem::wire::SyncChunk chunk;
    if (!chunk.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) break;
    if (!sequence.accept(chunk)) break;
    if (!keep_hashes) *chunk.mutable_checkpoint() = tandem::fuzz::fix_checkpoint_hashes(chunk.checkpoint());
    try {
      const auto info = tandem::checkpoint::inspect(chunk.checkpoint());
      if (info.kind != tandem::checkpoint::Kind::Incremental || info.has_core != chunk.last()) break;
      tandem::checkpoint::apply(m.machine(), chunk.checkpoint());
    } catch (const tandem::checkpoint::CheckpointError&) {
      break;
    }
    if (chunk.last()) {
      (void)m.machine().state_hash();
      break;
    }
  }
  return 0;
}
