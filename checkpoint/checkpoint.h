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
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

// The same parts with the encoding off the machine's thread (the live pair's pre-copy): the
// machine's thread walks a round with a RoundCopier and copies the raw bytes of the next
// pages and disk blocks into a bounded RecordBatch between guest slices; any thread turns
// the batches, in order, into parts with a PartEncoder. The parts are those write_*_parts
// makes (write_*_parts are these two on one thread). A page the guest writes after it was
// copied is in the next round's dirty bitmap, as with write_*_parts.
struct RecordBatch {
  enum class Type : uint8_t { Page, DiskBlock };
  struct Record {
    Type type = Type::Page;
    bool zero_run = false;
    uint64_t index = 0;   // first page/block
    uint64_t length = 0;  // raw bytes of a data record; pages/blocks of a zero run
    uint64_t offset = 0;  // data records: where the raw bytes start in `bytes`
  };
  std::vector<Record> records;  // ascending pages, then ascending disk blocks
  std::string bytes;            // the data records' raw bytes, copied
  // The source when the batch was copied (the header of a part opened by this batch).
  uint64_t mem_bytes = 0;
  uint64_t disk_bytes = 0;
  uint64_t icount = 0;
  Stats counts;  // pages, zero_pages_skipped, disk_blocks of these records
  void clear();
};

class RoundCopier {
 public:
  // Full: every page and block (the form of write_full_parts: zero ones as zero runs unless
  // zero_runs is false); clears the bitmaps, this round is the new base. Incremental: the
  // pages and blocks the bitmaps mark, taking (clearing) them.
  RoundCopier(vmm::Machine& machine, Kind kind, bool zero_runs = true);
  // Clears `batch`, then copies the next records into it until it holds about
  // max_raw_bytes of data (at most one disk chunk of 1 MiB more) or the round is done.
  // Throws CheckpointError when the disk cannot be read; the caller then calls
  // mark_all_changed (this round's changed set is lost).
  void copy_next(size_t max_raw_bytes, RecordBatch& batch);
  bool done() const { return done_; }

 private:
  void page(uint64_t p, RecordBatch& batch);
  void block(uint64_t b, RecordBatch& batch);
  void zero(RecordBatch::Type type, uint64_t index, RecordBatch& batch);
  void flush_zeros(RecordBatch& batch);

  vmm::Machine& machine_;
  const Kind kind_;
  const bool zero_runs_;
  std::vector<uint64_t> dirty_, written_;  // incremental: the round's changed set
  uint64_t next_page_ = 0, next_block_ = 0;
  std::string chunk_;              // full: disk bytes read ahead, from chunk_offset_
  uint64_t chunk_offset_ = 0;
  RecordBatch::Record zeros_;      // a zero run still growing (length 0: none)
  bool done_ = false;
};

class PartEncoder {
 public:
  PartEncoder(size_t part_bytes, PartSink sink, const Options& options = {});
  ~PartEncoder();
  PartEncoder(const PartEncoder&) = delete;
  PartEncoder& operator=(const PartEncoder&) = delete;
  // Encodes the batch's records; hands each part that fills to the sink.
  void add(const RecordBatch& batch);
  // Ends the round: the last part (an empty round is one empty part). Needs one add() first.
  Stats finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// After a round that was taken but not delivered (a copier or encoder failed, the link
// dropped): marks every page and block changed, so the next incremental is complete.
void mark_all_changed(vmm::Machine& machine);

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
