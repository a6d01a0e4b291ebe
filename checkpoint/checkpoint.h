#pragma once
// Machine checkpoints as self-checking byte streams (to a file or over the replication
// link). A full checkpoint carries the core state (everything Machine::save writes except
// RAM), every non-zero RAM page and every non-zero disk block; an incremental one carries
// the pages and disk blocks written since the previous write_* call, optionally with the
// core state (the final stop-and-copy round of a pre-copy). Each page/block is hashed
// (XXH3-64 of its raw bytes) and compressed (lz4, zstd, or stored raw when that is not
// smaller); a trailer holds the record count and an XXH3-64 over the whole stream.
// The format is described in docs/checkpoint.md.
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace tandem::vmm {
class Machine;
}

namespace tandem::checkpoint {

enum class Compression : uint8_t { None = 0, Lz4 = 1, Zstd = 2 };
enum class Kind : uint8_t { Full = 1, Incremental = 2 };

const char* to_string(Compression compression);
const char* to_string(Kind kind);

struct Options {
  Compression compression = Compression::Lz4;
  // Incremental only (a full checkpoint always carries the core state).
  bool include_core = true;
  // zstd level when compression == Zstd (1 = fastest).
  int zstd_level = 1;
};

struct Stats {
  uint64_t pages = 0;               // RAM pages carried with their contents
  uint64_t zero_pages_skipped = 0;  // pages not carried as data because they are zero
  uint64_t disk_blocks = 0;         // disk blocks carried with their contents
  uint64_t raw_bytes = 0;           // uncompressed bytes of core + pages + blocks carried
  uint64_t stream_bytes = 0;        // size of the stream
};

// A stream that cannot be applied: the message says what is wrong and where (byte offset,
// record, page or block index).
class CheckpointError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What a stream's header says, after its own checks (magic, version, kind, compression,
// trailer and stream hash). Throws CheckpointError otherwise. Does not decode records.
struct StreamInfo {
  Kind kind = Kind::Full;
  Compression compression = Compression::None;
  bool has_core = false;
  uint64_t mem_bytes = 0;
  uint64_t disk_bytes = 0;  // 0: no disk
  uint64_t icount = 0;      // the source's icount when the stream was written
  uint64_t records = 0;
};
StreamInfo inspect(std::string_view stream);

// Full snapshot of the machine (core + RAM + disk). Also clears the dirty bitmaps (RAM
// pages, disk blocks) so the next incremental is relative to this one.
std::string write_full(vmm::Machine& machine, const Options& options = {}, Stats* stats = nullptr);

// Pages and disk blocks written since the last write_* call, plus the core state when
// options.include_core. Pages/blocks that are now zero travel as zero runs (no data).
std::string write_incremental(vmm::Machine& machine, const Options& options = {}, Stats* stats = nullptr);

// The same streams handed out in chunks (about 1 MiB each, in order; their concatenation
// is the stream), so a big checkpoint can go to a socket or file without being held in
// memory. If the sink throws, the exception propagates and the dirty bitmaps are marked
// all-dirty (the next incremental is then complete).
using ChunkSink = std::function<void(std::string_view chunk)>;
Stats write_full(vmm::Machine& machine, const ChunkSink& sink, const Options& options = {});
Stats write_incremental(vmm::Machine& machine, const ChunkSink& sink, const Options& options = {});

// The same content cut into bounded, self-contained parts, for a pre-copy over a link whose
// messages are limited and whose receiver should not hold a whole round: each part is a
// complete incremental stream (own header, trailer and hash) of about `part_bytes` or less
// (a part ends at the first record boundary past it), and applying the parts in order with
// apply() has the effect of the one stream. Parts never carry the core state (it must be
// applied after the last disk block): it comes in its own write_incremental() after the
// last round. The full form covers every page and disk block (non-zero ones as data, the
// rest as zero runs), so its parts define all of RAM and disk on any receiver of the right
// size. There is always at least one part (an empty round is one empty stream). Parts are handed to the sink as
// they fill; a sink that throws marks the bitmaps all-dirty as above.
using PartSink = std::function<void(std::string&& part)>;
Stats write_full_parts(vmm::Machine& machine, size_t part_bytes, const PartSink& sink, const Options& options = {});
Stats write_incremental_parts(vmm::Machine& machine, size_t part_bytes, const PartSink& sink,
                              const Options& options = {});

// Verifies the whole stream (header, trailer hash, record structure and bounds, every
// record decompressed and its hash checked, the core state's header) before touching the
// machine, then applies it: a full stream replaces RAM and disk contents (anything not in
// the stream becomes zero), an incremental one overwrites the pages/blocks it carries; the
// core state, if present, is restored last. Throws CheckpointError; a refused stream
// leaves the machine unchanged. (Only a core state that passes the pre-checks but that
// the devices still refuse can fail after RAM was written: the machine then needs a fresh
// full checkpoint, as after a failed Machine::restore.)
// After a full stream every page and block is marked dirty, so the next incremental this
// machine writes is complete.
// Call it qualified (checkpoint::apply): with a std::string argument, unqualified lookup
// also finds std::apply by ADL, which is the better match and does not compile.
void apply(vmm::Machine& machine, std::string_view stream);

// Files: save writes a full checkpoint atomically (temporary file, fsync, rename, fsync of
// the directory); load reads the file and applies it. Both throw CheckpointError.
void save_file(vmm::Machine& machine, const std::string& path, const Options& options = {},
               Stats* stats = nullptr);
void load_file(vmm::Machine& machine, const std::string& path);

}  // namespace tandem::checkpoint
