// Writing checkpoint streams: full (core + every non-zero page and disk block) and
// incremental (what the dirty bitmaps say changed since the last write_*).
#include <xxhash.h>

#include <algorithm>
#include <new>
#include <cstring>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/codec.h"
#include "checkpoint/format.h"
#include "vmm/devices/disk_image.h"
#include "vmm/machine.h"
#include "vmm/state_io.h"

namespace tandem::checkpoint {

namespace {

using format::Codec;
using format::RecordType;
using vmm::DiskImage;
using vmm::kPageShift;
using vmm::kPageSize;

constexpr uint64_t kBlockBytes = DiskImage::kBlockBytes;
// Room for one data record of `raw` bytes: compressed records are smaller, and a record
// that does not compress is stored raw.
constexpr uint64_t record_bound(uint64_t raw) { return format::kRecordHeaderBytes + raw; }
// Full checkpoints read the disk in large chunks rather than one pread per block.
constexpr uint64_t kDiskChunkBytes = uint64_t{1} << 20;
static_assert(kDiskChunkBytes % kBlockBytes == 0);

bool all_zero(std::span<const uint8_t> bytes) {
  // Word-wise OR; the tail (a short last disk block) byte-wise.
  const size_t words = bytes.size() / 8;
  uint64_t any = 0;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i * 8, 8);
    any |= w;
  }
  for (size_t i = words * 8; i < bytes.size(); ++i) any |= bytes[i];
  return any == 0;
}

class StringSink final : public vmm::StateSink {
 public:
  void write(const void* data, size_t len) override { bytes.append(static_cast<const char*>(data), len); }
  std::string bytes;
};

bool bit(const std::vector<uint64_t>& bitmap, uint64_t i) { return (bitmap[i >> 6] >> (i & 63)) & 1; }

// What a stream's header says about its source machine.
struct Source {
  uint64_t mem_bytes = 0;
  uint64_t disk_bytes = 0;
  uint64_t icount = 0;
};

Source source_of(vmm::Machine& machine) {
  const DiskImage* disk = machine.board().disk();
  return {machine.memory().size(), disk ? disk->size_bytes() : 0, machine.icount()};
}

// Builds one stream: header, records, trailer. Bytes collect in a reused buffer that is
// handed to the sink in chunks of about kChunkBytes (always at record boundaries), so a
// stream of any size costs one small buffer; the trailer hash is computed on the way.
class StreamWriter {
 public:
  StreamWriter(const Source& source, Kind kind, const Options& options, bool has_core, const ChunkSink& sink)
      : compressor_(options.compression, options.zstd_level), sink_(sink), hash_(XXH3_createState()) {
    if (!hash_) throw std::bad_alloc();
    XXH3_64bits_reset(hash_);
    buf_.reserve(kChunkBytes + record_bound(kPageSize));
    format::Header h;
    h.kind = static_cast<uint8_t>(kind);
    h.compression = static_cast<uint8_t>(options.compression);
    h.flags = has_core ? format::kFlagHasCore : 0;
    h.mem_bytes = source.mem_bytes;
    h.disk_bytes = source.disk_bytes;
    h.icount = source.icount;
    buf_.resize(format::kHeaderBytes);
    format::encode(h, buf_.data());
  }
  ~StreamWriter() { XXH3_freeState(hash_); }
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  void data_record(RecordType type, uint64_t index, std::span<const uint8_t> raw) {
    const size_t at = buf_.size();
    buf_.resize(at + format::kRecordHeaderBytes);
    const Codec codec = compressor_.compress_into(raw, buf_);
    format::RecordHeader r;
    r.type = static_cast<uint8_t>(type);
    r.codec = static_cast<uint8_t>(codec);
    r.stored_len = static_cast<uint32_t>(buf_.size() - at - format::kRecordHeaderBytes);
    r.index = index;
    r.length = raw.size();
    r.hash = XXH3_64bits(raw.data(), raw.size());
    format::encode(r, buf_.data() + at);
    ++records_;
    stats_.raw_bytes += raw.size();
    maybe_flush();
  }

  void zero_run(RecordType type, uint64_t first, uint64_t count) {
    format::RecordHeader r;
    r.type = static_cast<uint8_t>(type);
    r.codec = static_cast<uint8_t>(Codec::ZeroRun);
    r.index = first;
    r.length = count;
    const size_t at = buf_.size();
    buf_.resize(at + format::kRecordHeaderBytes);
    format::encode(r, buf_.data() + at);
    ++records_;
    maybe_flush();
  }

  Stats finish() {
    const size_t at = buf_.size();
    buf_.resize(at + format::kTrailerBytes);
    std::memcpy(buf_.data() + at, format::kTrailerTag, 4);
    format::put<uint32_t>(buf_.data() + at + 4, 0);
    format::put<uint64_t>(buf_.data() + at + 8, records_);
    XXH3_64bits_update(hash_, buf_.data(), at + 16);
    format::put<uint64_t>(buf_.data() + at + 16, XXH3_64bits_digest(hash_));
    stats_.stream_bytes = flushed_ + buf_.size();
    sink_(buf_);
    buf_.clear();
    return stats_;
  }

  Stats& stats() { return stats_; }
  // Bytes of the stream so far (without the trailer).
  uint64_t bytes() const { return flushed_ + buf_.size(); }

 private:
  static constexpr size_t kChunkBytes = size_t{1} << 20;

  void maybe_flush() {
    if (buf_.size() < kChunkBytes) return;
    XXH3_64bits_update(hash_, buf_.data(), buf_.size());
    sink_(buf_);
    flushed_ += buf_.size();
    buf_.clear();
  }

  Compressor compressor_;
  const ChunkSink& sink_;
  XXH3_state_t* hash_;
  std::string buf_;
  uint64_t flushed_ = 0;
  uint64_t records_ = 0;
  Stats stats_;
};

// Records cut into parts: self-contained incremental streams (no core) that end at the
// first record boundary past `part_bytes`, each handed whole to the sink. A part's header
// describes the source as of the batch that opened it.
class PartWriter {
 public:
  PartWriter(const Options& options, size_t part_bytes, PartSink sink)
      : options_(options), part_bytes_(part_bytes), sink_(std::move(sink)) {}
  PartWriter(const PartWriter&) = delete;
  PartWriter& operator=(const PartWriter&) = delete;

  void set_source(const Source& source) {
    source_ = source;
    has_source_ = true;
  }
  void data_record(RecordType type, uint64_t index, std::span<const uint8_t> raw) {
    open().data_record(type, index, raw);
    maybe_close();
  }
  void zero_run(RecordType type, uint64_t first, uint64_t count) {
    open().zero_run(type, first, count);
    maybe_close();
  }
  Stats& stats() { return stats_; }
  Stats finish() {
    if (!has_source_) throw std::logic_error("checkpoint: a round of parts ended before its first batch");
    open();  // an empty round is still one (empty) part
    close();
    return stats_;
  }

 private:
  StreamWriter& open() {
    if (!writer_) {
      part_.clear();
      writer_.emplace(source_, Kind::Incremental, options_, /*has_core=*/false, append_);
    }
    return *writer_;
  }
  void maybe_close() {
    if (writer_->bytes() >= part_bytes_) close();
  }
  void close() {
    const Stats part = writer_->finish();
    writer_.reset();
    stats_.raw_bytes += part.raw_bytes;
    stats_.stream_bytes += part.stream_bytes;
    sink_(std::move(part_));
    part_ = std::string();
  }

  const Options options_;
  const size_t part_bytes_;
  const PartSink sink_;
  Source source_;
  bool has_source_ = false;
  std::string part_;
  const ChunkSink append_ = [this](std::string_view chunk) { part_.append(chunk); };
  std::optional<StreamWriter> writer_;
  Stats stats_;
};

void write_core(vmm::Machine& machine, StreamWriter& w) {
  StringSink sink;
  vmm::StateWriter writer(sink);
  machine.save_core(writer);
  const auto* p = reinterpret_cast<const uint8_t*>(sink.bytes.data());
  w.data_record(RecordType::Core, 0, {p, sink.bytes.size()});
}

// A write_* that fails after taking the dirty bitmaps (a disk read error, a sink that
// throws) has lost track of what changed: mark everything changed so the next incremental
// is complete rather than silently short.
template <typename Fn>
Stats keeping_bitmaps_safe(vmm::Machine& machine, Fn&& write) {
  try {
    return write();
  } catch (...) {
    mark_all_changed(machine);
    throw;
  }
}

[[noreturn]] void disk_read_failed(const DiskImage& disk, uint64_t offset) {
  throw CheckpointError("checkpoint: cannot read disk image " + disk.path() + " at byte " + std::to_string(offset));
}

}  // namespace

const char* to_string(Compression compression) {
  switch (compression) {
    case Compression::None:
      return "none";
    case Compression::Lz4:
      return "lz4";
    case Compression::Zstd:
      return "zstd";
  }
  return "?";
}

const char* to_string(Kind kind) {
  switch (kind) {
    case Kind::Full:
      return "full";
    case Kind::Incremental:
      return "incremental";
  }
  return "?";
}

namespace {

// The writer's records for one batch, in order, and the batch's page/block counts.
template <typename Writer>
void feed(const RecordBatch& batch, Writer& w) {
  for (const RecordBatch::Record& r : batch.records) {
    const RecordType type = r.type == RecordBatch::Type::Page ? RecordType::Page : RecordType::DiskBlock;
    if (r.zero_run) {
      w.zero_run(type, r.index, r.length);
    } else {
      const auto* raw = reinterpret_cast<const uint8_t*>(batch.bytes.data()) + r.offset;
      w.data_record(type, r.index, {raw, r.length});
    }
  }
  Stats& s = w.stats();
  s.pages += batch.counts.pages;
  s.zero_pages_skipped += batch.counts.zero_pages_skipped;
  s.disk_blocks += batch.counts.disk_blocks;
}

// Batches of this much raw data when copier and writer run on one thread: the copy is then
// only a reused buffer, not a snapshot anyone needs.
constexpr size_t kInlineBatchBytes = size_t{1} << 20;

template <typename Writer>
void copy_round(RoundCopier& copier, Writer& w) {
  RecordBatch batch;
  while (!copier.done()) {
    copier.copy_next(kInlineBatchBytes, batch);
    if constexpr (requires { w.set_source(Source{}); }) {
      w.set_source({batch.mem_bytes, batch.disk_bytes, batch.icount});
    }
    feed(batch, w);
  }
}

Stats write_full_unsafe(vmm::Machine& machine, const ChunkSink& sink, const Options& options) {
  // This checkpoint is the new base: what changes from now on goes in the next incremental.
  RoundCopier copier(machine, Kind::Full, /*zero_runs=*/false);
  StreamWriter w(source_of(machine), Kind::Full, options, /*has_core=*/true, sink);
  write_core(machine, w);
  copy_round(copier, w);
  return w.finish();
}

Stats write_incremental_unsafe(vmm::Machine& machine, const ChunkSink& sink, const Options& options) {
  RoundCopier copier(machine, Kind::Incremental);
  StreamWriter w(source_of(machine), Kind::Incremental, options, options.include_core, sink);
  if (options.include_core) write_core(machine, w);
  copy_round(copier, w);
  return w.finish();
}

}  // namespace

Stats write_full(vmm::Machine& machine, const ChunkSink& sink, const Options& options) {
  return keeping_bitmaps_safe(machine, [&] { return write_full_unsafe(machine, sink, options); });
}

Stats write_incremental(vmm::Machine& machine, const ChunkSink& sink, const Options& options) {
  return keeping_bitmaps_safe(machine, [&] { return write_incremental_unsafe(machine, sink, options); });
}

Stats write_full_parts(vmm::Machine& machine, size_t part_bytes, const PartSink& sink, const Options& options) {
  return keeping_bitmaps_safe(machine, [&] {
    RoundCopier copier(machine, Kind::Full);  // this round is the new base, as for write_full
    PartWriter w(options, part_bytes, sink);
    copy_round(copier, w);
    return w.finish();
  });
}

Stats write_incremental_parts(vmm::Machine& machine, size_t part_bytes, const PartSink& sink,
                              const Options& options) {
  return keeping_bitmaps_safe(machine, [&] {
    RoundCopier copier(machine, Kind::Incremental);
    PartWriter w(options, part_bytes, sink);
    copy_round(copier, w);
    return w.finish();
  });
}

void mark_all_changed(vmm::Machine& machine) {
  machine.memory().mark_all_dirty();
  if (DiskImage* disk = machine.board().disk()) disk->mark_all_written();
}

void RecordBatch::clear() {
  records.clear();
  bytes.clear();
  counts = {};
}

RoundCopier::RoundCopier(vmm::Machine& machine, Kind kind, bool zero_runs)
    : machine_(machine), kind_(kind), zero_runs_(zero_runs || kind == Kind::Incremental) {
  DiskImage* disk = machine.board().disk();
  // A full round is the new base: it clears the bitmaps without looking at them.
  dirty_ = machine.take_dirty_bitmap();
  if (disk) written_ = disk->take_written_blocks();
  if (kind == Kind::Full) dirty_.clear(), written_.clear();
}

void RoundCopier::copy_next(size_t max_raw_bytes, RecordBatch& batch) {
  batch.clear();
  const DiskImage* disk = machine_.board().disk();
  const Source source = source_of(machine_);
  batch.mem_bytes = source.mem_bytes;
  batch.disk_bytes = source.disk_bytes;
  batch.icount = source.icount;
  const uint64_t pages = machine_.memory().page_count();
  const uint64_t blocks = disk ? disk->block_count() : 0;
  const bool full = kind_ == Kind::Full;
  while (!done_ && batch.bytes.size() < max_raw_bytes) {
    if (next_page_ < pages) {
      const uint64_t p = next_page_++;
      if (full || bit(dirty_, p)) {
        page(p, batch);
      } else if ((p & 63) == 0 && dirty_[p >> 6] == 0) {
        next_page_ = std::min(pages, p + 64);  // skip whole clean words: most of a big guest is clean
      }
    } else if (next_block_ < blocks) {
      const uint64_t b = next_block_++;
      if (full || bit(written_, b)) {
        block(b, batch);
      } else if ((b & 63) == 0 && written_[b >> 6] == 0) {
        next_block_ = std::min(blocks, b + 64);
      }
    } else {
      flush_zeros(batch);
      done_ = true;
    }
  }
}

void RoundCopier::page(uint64_t p, RecordBatch& batch) {
  vmm::GuestMemory& memory = machine_.memory();
  const uint8_t* bytes = memory.host(memory.base() + (p << kPageShift));
  // Untouched pages are zero without looking (and looking would fault them in). A dirty
  // page may be untouched after a restore (everything is marked dirty): the receiver must
  // learn it is zero too.
  if (!memory.page_touched(p) || all_zero({bytes, kPageSize})) {
    ++batch.counts.zero_pages_skipped;
    zero(RecordBatch::Type::Page, p, batch);
    return;
  }
  flush_zeros(batch);  // records stay in index order
  batch.records.push_back({RecordBatch::Type::Page, false, p, kPageSize, batch.bytes.size()});
  batch.bytes.append(reinterpret_cast<const char*>(bytes), kPageSize);
  ++batch.counts.pages;
}

void RoundCopier::block(uint64_t b, RecordBatch& batch) {
  const DiskImage& disk = *machine_.board().disk();
  const uint64_t offset = b * kBlockBytes;
  const uint64_t length = std::min(kBlockBytes, disk.size_bytes() - offset);
  const char* bytes;
  std::string one;
  if (kind_ == Kind::Full) {
    // A full round reads the disk in large chunks rather than one pread per block.
    if (chunk_.empty() || offset < chunk_offset_ || offset + length > chunk_offset_ + chunk_.size()) {
      chunk_offset_ = offset;
      chunk_.resize(static_cast<size_t>(std::min(kDiskChunkBytes, disk.size_bytes() - offset)));
      if (!disk.read(offset, {reinterpret_cast<uint8_t*>(chunk_.data()), chunk_.size()})) {
        disk_read_failed(disk, offset);
      }
    }
    bytes = chunk_.data() + (offset - chunk_offset_);
  } else {
    one.resize(length);
    if (!disk.read(offset, {reinterpret_cast<uint8_t*>(one.data()), length})) disk_read_failed(disk, offset);
    bytes = one.data();
  }
  if (all_zero({reinterpret_cast<const uint8_t*>(bytes), length})) {
    zero(RecordBatch::Type::DiskBlock, b, batch);
    return;
  }
  flush_zeros(batch);
  batch.records.push_back({RecordBatch::Type::DiskBlock, false, b, length, batch.bytes.size()});
  batch.bytes.append(bytes, length);
  ++batch.counts.disk_blocks;
}

// Consecutive zero pages (or blocks) travel as one zero-run record, also across batches.
void RoundCopier::zero(RecordBatch::Type type, uint64_t index, RecordBatch& batch) {
  if (!zero_runs_) return;
  if (zeros_.length > 0 && zeros_.type == type && zeros_.index + zeros_.length == index) {
    ++zeros_.length;
    return;
  }
  flush_zeros(batch);
  zeros_ = {type, true, index, 1, 0};
}

void RoundCopier::flush_zeros(RecordBatch& batch) {
  if (zeros_.length > 0) batch.records.push_back(zeros_);
  zeros_.length = 0;
}

struct PartEncoder::Impl {
  PartWriter writer;
};

PartEncoder::PartEncoder(size_t part_bytes, PartSink sink, const Options& options)
    : impl_(new Impl{PartWriter(options, part_bytes, std::move(sink))}) {}
PartEncoder::~PartEncoder() = default;

void PartEncoder::add(const RecordBatch& batch) {
  impl_->writer.set_source({batch.mem_bytes, batch.disk_bytes, batch.icount});
  feed(batch, impl_->writer);
}

Stats PartEncoder::finish() { return impl_->writer.finish(); }

std::string write_full(vmm::Machine& machine, const Options& options, Stats* stats) {
  // Reserve the uncompressed upper bound (untouched reserved memory costs nothing) so the
  // string is not copied each time it outgrows itself.
  uint64_t bound = format::kHeaderBytes + format::kTrailerBytes + record_bound(64 << 10);
  const vmm::GuestMemory& memory = machine.memory();
  for (uint64_t p = 0; p < memory.page_count(); ++p) {
    if (memory.page_touched(p)) bound += record_bound(kPageSize);
  }
  if (const DiskImage* disk = machine.board().disk()) bound += disk->block_count() * record_bound(kBlockBytes);
  std::string out;
  out.reserve(static_cast<size_t>(std::min<uint64_t>(bound, uint64_t{4} << 30)));
  const Stats s = write_full(machine, [&out](std::string_view chunk) { out.append(chunk); }, options);
  if (stats) *stats = s;
  return out;
}

std::string write_incremental(vmm::Machine& machine, const Options& options, Stats* stats) {
  std::string out;
  const Stats s = write_incremental(machine, [&out](std::string_view chunk) { out.append(chunk); }, options);
  if (stats) *stats = s;
  return out;
}

}  // namespace tandem::checkpoint
