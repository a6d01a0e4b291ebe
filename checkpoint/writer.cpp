// Writing checkpoint streams: full (core + every non-zero page and disk block) and
// incremental (what the dirty bitmaps say changed since the last write_*).
#include <xxhash.h>

#include <algorithm>
#include <new>
#include <optional>
#include <cstring>
#include <span>
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

// Builds one stream: header, records, trailer. Bytes collect in a reused buffer that is
// handed to the sink in chunks of about kChunkBytes (always at record boundaries), so a
// stream of any size costs one small buffer; the trailer hash is computed on the way.
class StreamWriter {
 public:
  StreamWriter(vmm::Machine& machine, Kind kind, const Options& options, bool has_core, const ChunkSink& sink)
      : compressor_(options.compression, options.zstd_level), sink_(sink), hash_(XXH3_createState()) {
    if (!hash_) throw std::bad_alloc();
    XXH3_64bits_reset(hash_);
    buf_.reserve(kChunkBytes + record_bound(kPageSize));
    DiskImage* disk = machine.board().disk();
    format::Header h;
    h.kind = static_cast<uint8_t>(kind);
    h.compression = static_cast<uint8_t>(options.compression);
    h.flags = has_core ? format::kFlagHasCore : 0;
    h.mem_bytes = machine.memory().size();
    h.disk_bytes = disk ? disk->size_bytes() : 0;
    h.icount = machine.icount();
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
// first record boundary past `part_bytes`, each handed whole to the sink.
class PartWriter {
 public:
  PartWriter(vmm::Machine& machine, const Options& options, size_t part_bytes, const PartSink& sink)
      : machine_(machine), options_(options), part_bytes_(part_bytes), sink_(sink) {}
  PartWriter(const PartWriter&) = delete;
  PartWriter& operator=(const PartWriter&) = delete;

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
    open();  // an empty round is still one (empty) part
    close();
    return stats_;
  }

 private:
  StreamWriter& open() {
    if (!writer_) {
      part_.clear();
      writer_.emplace(machine_, Kind::Incremental, options_, /*has_core=*/false, append_);
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

  vmm::Machine& machine_;
  const Options options_;
  const size_t part_bytes_;
  const PartSink& sink_;
  std::string part_;
  const ChunkSink append_ = [this](std::string_view chunk) { part_.append(chunk); };
  std::optional<StreamWriter> writer_;
  Stats stats_;
};

// Zero runs collect consecutive changed-and-now-zero pages or blocks into one record.
template <typename Writer>
class ZeroRuns {
 public:
  ZeroRuns(Writer& w, RecordType type) : w_(w), type_(type) {}
  void add(uint64_t index) {
    if (count_ > 0 && first_ + count_ == index) {
      ++count_;
      return;
    }
    flush();
    first_ = index;
    count_ = 1;
  }
  void flush() {
    if (count_ > 0) w_.zero_run(type_, first_, count_);
    count_ = 0;
  }

 private:
  Writer& w_;
  RecordType type_;
  uint64_t first_ = 0;
  uint64_t count_ = 0;
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
    machine.memory().mark_all_dirty();
    if (DiskImage* disk = machine.board().disk()) disk->mark_all_written();
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

// Every non-zero page and disk block as data. With zero_runs the others travel as zero
// runs (parts of a full round must define them); a full stream leaves them out.
template <typename Writer>
void full_body(vmm::Machine& machine, Writer& w, bool zero_runs) {
  vmm::GuestMemory& memory = machine.memory();
  DiskImage* disk = machine.board().disk();
  Stats& s = w.stats();
  ZeroRuns zero_pages(w, RecordType::Page);
  for (uint64_t p = 0; p < memory.page_count(); ++p) {
    // Untouched pages are zero without looking (and looking would fault them in).
    const uint8_t* page = memory.host(memory.base() + (p << kPageShift));
    if (!memory.page_touched(p) || all_zero({page, kPageSize})) {
      ++s.zero_pages_skipped;
      if (zero_runs) zero_pages.add(p);
      continue;
    }
    zero_pages.flush();  // records stay in index order
    w.data_record(RecordType::Page, p, {page, kPageSize});
    ++s.pages;
  }
  zero_pages.flush();
  if (disk) {
    ZeroRuns zero_blocks(w, RecordType::DiskBlock);
    std::vector<uint8_t> chunk(kDiskChunkBytes);
    for (uint64_t offset = 0; offset < disk->size_bytes(); offset += kDiskChunkBytes) {
      const size_t n = static_cast<size_t>(std::min(kDiskChunkBytes, disk->size_bytes() - offset));
      if (!disk->read(offset, {chunk.data(), n})) disk_read_failed(*disk, offset);
      for (size_t at = 0; at < n; at += kBlockBytes) {
        const std::span<const uint8_t> block(chunk.data() + at, std::min<size_t>(kBlockBytes, n - at));
        const uint64_t index = (offset + at) / kBlockBytes;
        if (all_zero(block)) {
          if (zero_runs) zero_blocks.add(index);
          continue;
        }
        zero_blocks.flush();
        w.data_record(RecordType::DiskBlock, index, block);
        ++s.disk_blocks;
      }
    }
    zero_blocks.flush();
  }
}

// The pages and blocks the bitmaps mark: data, or a zero run when they are zero now.
template <typename Writer>
void incremental_body(vmm::Machine& machine, Writer& w, const std::vector<uint64_t>& dirty,
                      const std::vector<uint64_t>& written) {
  vmm::GuestMemory& memory = machine.memory();
  DiskImage* disk = machine.board().disk();
  Stats& s = w.stats();
  ZeroRuns zero_pages(w, RecordType::Page);
  for (uint64_t p = 0; p < memory.page_count(); ++p) {
    if (!bit(dirty, p)) {
      // Skip whole clean words quickly: most of a big guest is clean between rounds.
      if ((p & 63) == 0 && dirty[p >> 6] == 0) p += 63;
      continue;
    }
    const uint8_t* page = memory.host(memory.base() + (p << kPageShift));
    // A dirty page may be untouched after a restore (everything is marked dirty); it is
    // zero, and the receiver must learn that too.
    if (!memory.page_touched(p) || all_zero({page, kPageSize})) {
      zero_pages.add(p);
      ++s.zero_pages_skipped;
      continue;
    }
    zero_pages.flush();  // records stay in index order
    w.data_record(RecordType::Page, p, {page, kPageSize});
    ++s.pages;
  }
  zero_pages.flush();
  if (disk) {
    ZeroRuns zero_blocks(w, RecordType::DiskBlock);
    std::vector<uint8_t> block(kBlockBytes);
    for (uint64_t b = 0; b < disk->block_count(); ++b) {
      if (!bit(written, b)) {
        if ((b & 63) == 0 && written[b >> 6] == 0) b += 63;
        continue;
      }
      const uint64_t offset = b * kBlockBytes;
      const std::span<uint8_t> bytes(block.data(), std::min(kBlockBytes, disk->size_bytes() - offset));
      if (!disk->read(offset, bytes)) disk_read_failed(*disk, offset);
      if (all_zero(bytes)) {
        zero_blocks.add(b);
        continue;
      }
      zero_blocks.flush();
      w.data_record(RecordType::DiskBlock, b, bytes);
      ++s.disk_blocks;
    }
    zero_blocks.flush();
  }
}

Stats write_full_unsafe(vmm::Machine& machine, const ChunkSink& sink, const Options& options) {
  DiskImage* disk = machine.board().disk();
  // This checkpoint is the new base: what changes from now on goes in the next incremental.
  (void)machine.take_dirty_bitmap();
  if (disk) (void)disk->take_written_blocks();

  StreamWriter w(machine, Kind::Full, options, /*has_core=*/true, sink);
  write_core(machine, w);
  full_body(machine, w, /*zero_runs=*/false);
  return w.finish();
}

Stats write_incremental_unsafe(vmm::Machine& machine, const ChunkSink& sink, const Options& options) {
  DiskImage* disk = machine.board().disk();
  const std::vector<uint64_t> dirty = machine.take_dirty_bitmap();
  const std::vector<uint64_t> written = disk ? disk->take_written_blocks() : std::vector<uint64_t>{};

  StreamWriter w(machine, Kind::Incremental, options, options.include_core, sink);
  if (options.include_core) write_core(machine, w);
  incremental_body(machine, w, dirty, written);
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
    // This round is the new base, as for write_full.
    (void)machine.take_dirty_bitmap();
    if (DiskImage* disk = machine.board().disk()) (void)disk->take_written_blocks();
    PartWriter w(machine, options, part_bytes, sink);
    full_body(machine, w, /*zero_runs=*/true);
    return w.finish();
  });
}

Stats write_incremental_parts(vmm::Machine& machine, size_t part_bytes, const PartSink& sink,
                              const Options& options) {
  return keeping_bitmaps_safe(machine, [&] {
    DiskImage* disk = machine.board().disk();
    const std::vector<uint64_t> dirty = machine.take_dirty_bitmap();
    const std::vector<uint64_t> written = disk ? disk->take_written_blocks() : std::vector<uint64_t>{};
    PartWriter w(machine, options, part_bytes, sink);
    incremental_body(machine, w, dirty, written);
    return w.finish();
  });
}

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
