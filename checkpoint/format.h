#pragma once
// The checkpoint stream layout (internal to checkpoint/; docs/checkpoint.md is the
// reference). All integers little-endian.
//
//   header  (40 bytes)  "TNDMCKPT" u32 version u8 kind u8 compression u8 flags u8 0
//                       u64 mem_bytes u64 disk_bytes u64 icount
//   record* (32 bytes + stored_len)
//                       u8 type u8 codec u16 0 u32 stored_len u64 index u64 length u64 hash
//                       stored_len bytes of payload
//   trailer (24 bytes)  "TEND" u32 0 u64 record_count u64 XXH3-64(all bytes before this field)
//
// Records come in this order: at most one core record, then page records by ascending
// index, then disk-block records by ascending index. `length` is the raw byte count of a
// data record, or the number of pages/blocks of a zero run (codec ZeroRun, no payload).
#include <bit>
#include <cstdint>
#include <cstring>

namespace tandem::checkpoint::format {

static_assert(std::endian::native == std::endian::little, "the stream is written as host little-endian");

inline constexpr char kMagic[8] = {'T', 'N', 'D', 'M', 'C', 'K', 'P', 'T'};
inline constexpr uint32_t kVersion = 1;
inline constexpr char kTrailerTag[4] = {'T', 'E', 'N', 'D'};
inline constexpr uint8_t kFlagHasCore = 1;

inline constexpr size_t kHeaderBytes = 40;
inline constexpr size_t kRecordHeaderBytes = 32;
inline constexpr size_t kTrailerBytes = 24;

enum class RecordType : uint8_t { Core = 'C', Page = 'P', DiskBlock = 'D' };
enum class Codec : uint8_t { Raw = 0, Lz4 = 1, Zstd = 2, ZeroRun = 3 };

// The core state is a few KiB today; the bound keeps a hostile length from allocating.
inline constexpr uint64_t kMaxCoreBytes = uint64_t{64} << 20;

struct Header {
  uint32_t version = kVersion;
  uint8_t kind = 0;
  uint8_t compression = 0;
  uint8_t flags = 0;
  uint64_t mem_bytes = 0;
  uint64_t disk_bytes = 0;
  uint64_t icount = 0;
};

struct RecordHeader {
  uint8_t type = 0;
  uint8_t codec = 0;
  uint16_t reserved = 0;
  uint32_t stored_len = 0;
  uint64_t index = 0;
  uint64_t length = 0;
  uint64_t hash = 0;
};

template <typename T>
inline void put(char* at, T value) {
  std::memcpy(at, &value, sizeof(T));
}
template <typename T>
inline T get(const char* at) {
  T value;
  std::memcpy(&value, at, sizeof(T));
  return value;
}

inline void encode(const Header& h, char* out) {
  std::memcpy(out, kMagic, 8);
  put<uint32_t>(out + 8, h.version);
  put<uint8_t>(out + 12, h.kind);
  put<uint8_t>(out + 13, h.compression);
  put<uint8_t>(out + 14, h.flags);
  put<uint8_t>(out + 15, 0);
  put<uint64_t>(out + 16, h.mem_bytes);
  put<uint64_t>(out + 24, h.disk_bytes);
  put<uint64_t>(out + 32, h.icount);
}

// The caller has checked the magic and that kHeaderBytes are there.
inline Header decode_header(const char* in) {
  Header h;
  h.version = get<uint32_t>(in + 8);
  h.kind = get<uint8_t>(in + 12);
  h.compression = get<uint8_t>(in + 13);
  h.flags = get<uint8_t>(in + 14);
  h.mem_bytes = get<uint64_t>(in + 16);
  h.disk_bytes = get<uint64_t>(in + 24);
  h.icount = get<uint64_t>(in + 32);
  return h;
}

inline void encode(const RecordHeader& r, char* out) {
  put<uint8_t>(out + 0, r.type);
  put<uint8_t>(out + 1, r.codec);
  put<uint16_t>(out + 2, 0);
  put<uint32_t>(out + 4, r.stored_len);
  put<uint64_t>(out + 8, r.index);
  put<uint64_t>(out + 16, r.length);
  put<uint64_t>(out + 24, r.hash);
}

inline RecordHeader decode_record_header(const char* in) {
  RecordHeader r;
  r.type = get<uint8_t>(in + 0);
  r.codec = get<uint8_t>(in + 1);
  r.reserved = get<uint16_t>(in + 2);
  r.stored_len = get<uint32_t>(in + 4);
  r.index = get<uint64_t>(in + 8);
  r.length = get<uint64_t>(in + 16);
  r.hash = get<uint64_t>(in + 24);
  return r;
}

}  // namespace tandem::checkpoint::format
