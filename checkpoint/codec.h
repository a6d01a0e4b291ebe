#pragma once
// Per-record compression for checkpoint streams: lz4 (fast, the default) or zstd, with
// reusable contexts so a stream of thousands of 4 KiB pages allocates nothing per page.
#include <cstdint>
#include <span>
#include <string>

#include "checkpoint/checkpoint.h"
#include "checkpoint/format.h"

struct ZSTD_CCtx_s;
struct ZSTD_DCtx_s;

namespace tandem::checkpoint {

class Compressor {
 public:
  Compressor(Compression compression, int zstd_level);
  ~Compressor();
  Compressor(const Compressor&) = delete;
  Compressor& operator=(const Compressor&) = delete;

  // Appends the stored form of `raw` to `out` and returns its codec: compressed when
  // that is smaller, otherwise the raw bytes (Codec::Raw).
  format::Codec compress_into(std::span<const uint8_t> raw, std::string& out);

 private:
  Compression compression_;
  int zstd_level_;
  std::string scratch_;
  std::string lz4_state_;
  ZSTD_CCtx_s* zstd_ = nullptr;
};

class Decompressor {
 public:
  Decompressor();
  ~Decompressor();
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;

  // Decodes `stored` (codec Raw, Lz4 or Zstd) into exactly out.size() bytes. Returns
  // false when the data is malformed or does not decode to exactly that size.
  bool decompress(format::Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> out);

  // Largest stored size a well-formed record of `raw_bytes` can have under `codec`.
  static uint64_t max_stored_bytes(format::Codec codec, uint64_t raw_bytes);

 private:
  ZSTD_DCtx_s* zstd_ = nullptr;
};

}  // namespace tandem::checkpoint
