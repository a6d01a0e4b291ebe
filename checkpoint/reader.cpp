// Reading checkpoint streams: everything is checked (structure, bounds, hashes, the core
// state's header) before the machine is touched; only then is the stream applied.
#include <xxhash.h>

#include <algorithm>
#include <array>
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
constexpr uint64_t kDiskChunkBytes = uint64_t{1} << 20;

[[noreturn]] void fail(const std::string& what) { throw CheckpointError("checkpoint: " + what); }

std::string mib(uint64_t bytes) {
  if (bytes % (uint64_t{1} << 20) == 0) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

struct RecordView {
  RecordType type;
  Codec codec;
  uint64_t index;
  uint64_t length;  // raw bytes, or pages/blocks of a zero run
  uint64_t hash;
  uint64_t number;  // position in the stream, for messages
  size_t offset;    // of the record header
  std::span<const uint8_t> payload;

  std::string where() const {
    std::string what;
    switch (type) {
      case RecordType::Core:
        what = "core state";
        break;
      case RecordType::Page:
        what = "RAM page " + std::to_string(index);
        break;
      case RecordType::DiskBlock:
        what = "disk block " + std::to_string(index);
        break;
    }
    return what + " (record " + std::to_string(number) + " at byte " + std::to_string(offset) + ")";
  }
};

struct Parsed {
  StreamInfo info;
  std::vector<RecordView> records;
};

uint64_t block_count(uint64_t disk_bytes) { return disk_bytes / kBlockBytes + (disk_bytes % kBlockBytes != 0); }

uint64_t block_length(uint64_t disk_bytes, uint64_t index) {
  return std::min(kBlockBytes, disk_bytes - index * kBlockBytes);
}

// Header, trailer and stream hash: cheap checks that catch truncation and corruption
// anywhere before any record is looked at.
StreamInfo check_envelope(std::string_view s) {
  if (s.size() >= sizeof format::kMagic && std::memcmp(s.data(), format::kMagic, sizeof format::kMagic) != 0) {
    fail("not a Tandem checkpoint (bad magic at byte 0)");
  }
  if (s.size() < format::kHeaderBytes + format::kTrailerBytes) {
    fail("stream truncated: " + std::to_string(s.size()) + " bytes is less than a header and a trailer (" +
         std::to_string(format::kHeaderBytes + format::kTrailerBytes) + " bytes)");
  }
  const format::Header h = format::decode_header(s.data());
  if (h.version != format::kVersion) {
    fail("format version " + std::to_string(h.version) + " is not supported (expected " +
         std::to_string(format::kVersion) + ")");
  }
  if (h.kind != static_cast<uint8_t>(Kind::Full) && h.kind != static_cast<uint8_t>(Kind::Incremental)) {
    fail("unknown checkpoint kind " + std::to_string(h.kind) + " at byte 12");
  }
  if (h.compression > static_cast<uint8_t>(Compression::Zstd)) {
    fail("unknown compression " + std::to_string(h.compression) + " at byte 13");
  }
  if ((h.flags & ~format::kFlagHasCore) != 0 || s[15] != 0) fail("unknown header flags at byte 14");
  if (h.mem_bytes == 0 || h.mem_bytes % kPageSize != 0) {
    fail("RAM size " + std::to_string(h.mem_bytes) + " in the header is not a non-zero multiple of 4 KiB");
  }
  if (h.kind == static_cast<uint8_t>(Kind::Full) && !(h.flags & format::kFlagHasCore)) {
    fail("full checkpoint without core state");
  }

  const size_t trailer_at = s.size() - format::kTrailerBytes;
  if (std::memcmp(s.data() + trailer_at, format::kTrailerTag, 4) != 0 ||
      format::get<uint32_t>(s.data() + trailer_at + 4) != 0) {
    fail("stream truncated or damaged: no end marker in the last " + std::to_string(format::kTrailerBytes) +
         " of its " + std::to_string(s.size()) + " bytes");
  }
  const uint64_t want = format::get<uint64_t>(s.data() + trailer_at + 16);
  const uint64_t got = XXH3_64bits(s.data(), trailer_at + 16);
  if (want != got) fail("stream corrupt: its XXH3 checksum does not match the trailer's");

  StreamInfo info;
  info.kind = static_cast<Kind>(h.kind);
  info.compression = static_cast<Compression>(h.compression);
  info.has_core = h.flags & format::kFlagHasCore;
  info.mem_bytes = h.mem_bytes;
  info.disk_bytes = h.disk_bytes;
  info.icount = h.icount;
  info.records = format::get<uint64_t>(s.data() + trailer_at + 8);
  return info;
}

// Walks the records: every length and index is checked against the header's sizes, the
// order is enforced, and every payload lies inside the stream.
Parsed parse(std::string_view s) {
  Parsed parsed;
  parsed.info = check_envelope(s);
  const StreamInfo& info = parsed.info;
  const uint64_t pages = info.mem_bytes >> kPageShift;
  const uint64_t blocks = block_count(info.disk_bytes);
  const size_t end = s.size() - format::kTrailerBytes;
  size_t at = format::kHeaderBytes;
  // The next allowed page / block index: records ascend and never overlap.
  uint64_t next_page = 0, next_block = 0;
  // Stage of the record order: 0 = core allowed, 1 = pages, 2 = disk blocks.
  int stage = 0;
  bool core_seen = false;
  while (at < end) {
    const uint64_t number = parsed.records.size();
    const std::string here = "record " + std::to_string(number) + " at byte " + std::to_string(at);
    if (end - at < format::kRecordHeaderBytes) fail(here + ": header runs past the trailer");
    const format::RecordHeader r = format::decode_record_header(s.data() + at);
    if (r.reserved != 0) fail(here + ": reserved field is not zero");
    if (r.codec > static_cast<uint8_t>(Codec::ZeroRun)) fail(here + ": unknown codec " + std::to_string(r.codec));
    const Codec codec = static_cast<Codec>(r.codec);
    const size_t payload_at = at + format::kRecordHeaderBytes;
    if (r.stored_len > end - payload_at) {
      fail(here + ": " + std::to_string(r.stored_len) + " bytes of payload run past the trailer");
    }
    RecordView v{static_cast<RecordType>(r.type), codec, r.index, r.length, r.hash, number, at,
                 {reinterpret_cast<const uint8_t*>(s.data() + payload_at), r.stored_len}};

    if (codec == Codec::ZeroRun) {
      if (r.stored_len != 0 || r.hash != 0 || r.length == 0) fail(here + ": malformed zero run");
    } else {
      if (r.stored_len > Decompressor::max_stored_bytes(codec, r.length)) {
        fail(here + ": " + std::to_string(r.stored_len) + " stored bytes cannot decode to " +
             std::to_string(r.length));
      }
    }
    switch (v.type) {
      case RecordType::Core:
        if (!info.has_core) fail(here + ": core state in a stream whose header says it has none");
        if (stage != 0 || core_seen) fail(here + ": core state out of place (it comes first, once)");
        if (codec == Codec::ZeroRun || r.index != 0 || r.length == 0 || r.length > format::kMaxCoreBytes) {
          fail(here + ": malformed core state record (length " + std::to_string(r.length) + ")");
        }
        core_seen = true;
        stage = 1;
        break;
      case RecordType::Page: {
        if (stage > 1) fail(here + ": RAM page after disk blocks");
        stage = 1;
        const uint64_t count = codec == Codec::ZeroRun ? r.length : 1;
        if (r.index >= pages || count > pages - r.index) {
          fail(here + ": RAM page index " + std::to_string(r.index) + " (+" + std::to_string(count) +
               ") is outside the " + std::to_string(pages) + " pages of RAM");
        }
        if (r.index < next_page) fail(here + ": RAM page " + std::to_string(r.index) + " out of order");
        if (codec != Codec::ZeroRun && r.length != kPageSize) fail(here + ": page length is not 4096");
        next_page = r.index + count;
        break;
      }
      case RecordType::DiskBlock: {
        if (info.disk_bytes == 0) fail(here + ": disk block in a stream without a disk");
        stage = 2;
        const uint64_t count = codec == Codec::ZeroRun ? r.length : 1;
        if (r.index >= blocks || count > blocks - r.index) {
          fail(here + ": disk block index " + std::to_string(r.index) + " (+" + std::to_string(count) +
               ") is outside the " + std::to_string(blocks) + " blocks of the disk");
        }
        if (r.index < next_block) fail(here + ": disk block " + std::to_string(r.index) + " out of order");
        if (codec != Codec::ZeroRun && r.length != block_length(info.disk_bytes, r.index)) {
          fail(here + ": disk block length " + std::to_string(r.length) + " does not fit the disk");
        }
        next_block = r.index + count;
        break;
      }
      default:
        fail(here + ": unknown record type " + std::to_string(r.type));
    }
    parsed.records.push_back(v);
    at = payload_at + r.stored_len;
  }
  if (info.has_core && !core_seen) fail("the header promises core state but the stream has none");
  if (parsed.records.size() != info.records) {
    fail("the trailer counts " + std::to_string(info.records) + " records, the stream has " +
         std::to_string(parsed.records.size()));
  }
  return parsed;
}

// Decodes a data record into `out` (resized to its length) and checks its hash.
void decode(Decompressor& d, const RecordView& r, std::vector<uint8_t>& out) {
  out.resize(r.length);
  if (!d.decompress(r.codec, r.payload, out)) fail(r.where() + " does not decompress to " + std::to_string(r.length) + " bytes");
  if (XXH3_64bits(out.data(), out.size()) != r.hash) fail(r.where() + " fails its XXH3 check");
}

class SpanSource final : public vmm::StateSource {
 public:
  explicit SpanSource(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  void read(void* data, size_t len) override {
    if (len > bytes_.size() - at_) throw vmm::StateError("core state truncated at byte " + std::to_string(at_));
    std::memcpy(data, bytes_.data() + at_, len);
    at_ += len;
  }
  size_t remaining() const { return bytes_.size() - at_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
};

// The core state starts like Machine::save_core writes it: "TNDM", u32 version,
// u64 mem_bytes, u64 icount. Checked up front so the common mismatches are refused
// before anything is written.
void precheck_core(const std::vector<uint8_t>& core, const StreamInfo& info, const vmm::Machine& machine,
                   const RecordView& r) {
  if (core.size() < 24 || std::memcmp(core.data(), "TNDM", 4) != 0) fail(r.where() + " is not machine state");
  uint32_t version;
  uint64_t mem_bytes, icount;
  std::memcpy(&version, core.data() + 4, 4);
  std::memcpy(&mem_bytes, core.data() + 8, 8);
  std::memcpy(&icount, core.data() + 16, 8);
  if (version != vmm::Machine::kSnapshotVersion) {
    fail(r.where() + " has machine state version " + std::to_string(version) + ", this VMM reads " +
         std::to_string(vmm::Machine::kSnapshotVersion));
  }
  if (mem_bytes != machine.config().mem_bytes || mem_bytes != info.mem_bytes) {
    fail(r.where() + " is for " + mib(mem_bytes) + " of RAM, not " + mib(machine.config().mem_bytes));
  }
  if (icount != info.icount) fail(r.where() + " is at icount " + std::to_string(icount) + ", the header says " + std::to_string(info.icount));
}

void check_fits(const StreamInfo& info, vmm::Machine& machine) {
  const uint64_t mem = machine.config().mem_bytes;
  if (info.mem_bytes != mem) {
    fail("snapshot of a machine with " + mib(info.mem_bytes) + " of RAM, this machine has " + mib(mem) +
         " (use --mem " + std::to_string(info.mem_bytes >> 20) + ")");
  }
  const DiskImage* disk = machine.board().disk();
  const uint64_t disk_bytes = disk ? disk->size_bytes() : 0;
  if (info.disk_bytes != disk_bytes) {
    if (disk_bytes == 0) {
      fail("snapshot carries a disk of " + std::to_string(info.disk_bytes) +
           " bytes but this machine has none (attach an image of that size with --disk)");
    }
    if (info.disk_bytes == 0) fail("snapshot has no disk but this machine has " + disk->path());
    fail("snapshot's disk is " + std::to_string(info.disk_bytes) + " bytes, " + disk->path() + " is " +
         std::to_string(disk_bytes) + " bytes (disk-size mismatch)");
  }
}

void write_disk(DiskImage& disk, uint64_t offset, std::span<const uint8_t> bytes) {
  if (!disk.write(offset, bytes)) {
    fail("cannot write disk image " + disk.path() + " at byte " + std::to_string(offset) +
         "; the machine needs a fresh full checkpoint");
  }
}

// Makes the block zero unless it already is (reading is cheaper than writing, and keeps
// a sparse image sparse).
void zero_disk_block(DiskImage& disk, uint64_t index, std::vector<uint8_t>& scratch) {
  const uint64_t offset = index * kBlockBytes;
  scratch.resize(block_length(disk.size_bytes(), index));
  if (disk.read(offset, scratch) && std::all_of(scratch.begin(), scratch.end(), [](uint8_t b) { return b == 0; })) {
    return;
  }
  std::fill(scratch.begin(), scratch.end(), 0);
  write_disk(disk, offset, scratch);
}

// A full checkpoint defines the whole disk: blocks it does not carry must end up zero.
void zero_uncarried_blocks(DiskImage& disk, const std::vector<RecordView>& records) {
  std::vector<bool> carried(block_count(disk.size_bytes()), false);
  for (const RecordView& r : records) {
    if (r.type != RecordType::DiskBlock) continue;
    const uint64_t count = r.codec == Codec::ZeroRun ? r.length : 1;
    for (uint64_t b = r.index; b < r.index + count; ++b) carried[b] = true;
  }
  std::vector<uint8_t> chunk(kDiskChunkBytes);
  const std::vector<uint8_t> zeros(kBlockBytes, 0);
  for (uint64_t offset = 0; offset < disk.size_bytes(); offset += kDiskChunkBytes) {
    const size_t n = static_cast<size_t>(std::min(kDiskChunkBytes, disk.size_bytes() - offset));
    const bool readable = disk.read(offset, {chunk.data(), n});
    for (size_t at = 0; at < n; at += kBlockBytes) {
      const uint64_t b = (offset + at) / kBlockBytes;
      const size_t len = std::min<size_t>(kBlockBytes, n - at);
      if (carried[b]) continue;
      if (readable && std::all_of(chunk.begin() + at, chunk.begin() + at + len, [](uint8_t x) { return x == 0; })) {
        continue;
      }
      write_disk(disk, offset + at, {zeros.data(), len});
    }
  }
}

// A full checkpoint defines all of RAM: pages it does not carry must end up zero. Pages
// it carries are overwritten in place rather than released first, so re-syncing a machine
// that already holds most of the state does not fault its RAM back in.
void zero_uncarried_pages(vmm::GuestMemory& memory, const std::vector<RecordView>& records) {
  std::vector<bool> carried(memory.page_count(), false);
  for (const RecordView& r : records) {
    if (r.type == RecordType::Page && r.codec != Codec::ZeroRun) carried[r.index] = true;
  }
  const std::array<uint8_t, kPageSize> zero_page{};
  for (uint64_t p = 0; p < memory.page_count(); ++p) {
    if (carried[p] || !memory.page_touched(p)) continue;
    const uint64_t addr = memory.base() + (p << kPageShift);
    if (std::memcmp(memory.host(addr), zero_page.data(), kPageSize) != 0) memory.write(addr, zero_page);
  }
}

}  // namespace

StreamInfo inspect(std::string_view stream) { return parse(stream).info; }

void apply(vmm::Machine& machine, std::string_view stream) {
  const Parsed parsed = parse(stream);
  const StreamInfo& info = parsed.info;
  check_fits(info, machine);

  // Pass 1: decode and verify every record; keep only the (small) core state.
  Decompressor decompressor;
  std::vector<uint8_t> scratch;
  std::vector<uint8_t> core;
  for (const RecordView& r : parsed.records) {
    if (r.codec == Codec::ZeroRun) continue;
    decode(decompressor, r, scratch);
    if (r.type == RecordType::Core) {
      precheck_core(scratch, info, machine, r);
      core = scratch;
    }
  }

  // Pass 2: apply. RAM and disk first, the core state last: restoring virtio-blk checks the
  // disk's content hash, which must already be the checkpoint's.
  vmm::GuestMemory& memory = machine.memory();
  DiskImage* disk = machine.board().disk();
  const bool full = info.kind == Kind::Full;
  if (full) zero_uncarried_pages(memory, parsed.records);
  if (full && disk) zero_uncarried_blocks(*disk, parsed.records);
  const std::array<uint8_t, kPageSize> zero_page{};
  for (const RecordView& r : parsed.records) {
    switch (r.type) {
      case RecordType::Core:
        break;
      case RecordType::Page:
        if (r.codec == Codec::ZeroRun) {
          for (uint64_t p = r.index; p < r.index + r.length; ++p) {
            // Untouched pages are zero already; writing would only fault them in.
            if (memory.page_touched(p)) memory.write(memory.base() + (p << kPageShift), zero_page);
          }
        } else {
          decode(decompressor, r, scratch);
          memory.write(memory.base() + (r.index << kPageShift), scratch);
        }
        break;
      case RecordType::DiskBlock:
        if (r.codec == Codec::ZeroRun) {
          for (uint64_t b = r.index; b < r.index + r.length; ++b) zero_disk_block(*disk, b, scratch);
        } else {
          decode(decompressor, r, scratch);
          write_disk(*disk, r.index * kBlockBytes, scratch);
        }
        break;
    }
  }
  if (!core.empty()) {
    SpanSource source(core);
    vmm::StateReader reader(source);
    try {
      machine.restore_core(reader);
    } catch (const vmm::StateError& e) {
      fail(std::string("core state refused after RAM and disk were written (the machine needs a fresh full "
                       "checkpoint): ") + e.what());
    }
    if (source.remaining() != 0) {
      fail(std::to_string(source.remaining()) + " unexpected bytes after the core state (the machine needs a "
           "fresh full checkpoint)");
    }
  }
  if (full) {
    // Like Machine::restore: this machine's next incremental must be complete.
    memory.mark_all_dirty();
    if (disk) disk->mark_all_written();
  }
}

}  // namespace tandem::checkpoint
