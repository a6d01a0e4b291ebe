#include "checkpoint/codec.h"

#include <lz4.h>
#include <zstd.h>

#include <cstring>
#include <new>

namespace tandem::checkpoint {

using format::Codec;

Compressor::Compressor(Compression compression, int zstd_level)
    : compression_(compression), zstd_level_(zstd_level) {
  if (compression_ == Compression::Lz4) lz4_state_.resize(static_cast<size_t>(LZ4_sizeofState()));
  if (compression_ == Compression::Zstd) {
    zstd_ = ZSTD_createCCtx();
    if (!zstd_) throw std::bad_alloc();
  }
}

Compressor::~Compressor() { ZSTD_freeCCtx(zstd_); }

Codec Compressor::compress_into(std::span<const uint8_t> raw, std::string& out) {
  const char* src = reinterpret_cast<const char*>(raw.data());
  size_t packed = 0;
  Codec codec = Codec::Raw;
  if (compression_ == Compression::Lz4 && raw.size() <= static_cast<size_t>(LZ4_MAX_INPUT_SIZE)) {
    scratch_.resize(static_cast<size_t>(LZ4_compressBound(static_cast<int>(raw.size()))));
    // Bound the output to raw.size() - 1: if lz4 cannot beat raw, it gives up early (0).
    const int n = LZ4_compress_fast_extState(lz4_state_.data(), src, scratch_.data(), static_cast<int>(raw.size()),
                                             static_cast<int>(raw.size()) - 1, 1);
    if (n > 0) {
      packed = static_cast<size_t>(n);
      codec = Codec::Lz4;
    }
  } else if (compression_ == Compression::Zstd) {
    scratch_.resize(ZSTD_compressBound(raw.size()));
    const size_t n = ZSTD_compressCCtx(zstd_, scratch_.data(), scratch_.size(), src, raw.size(), zstd_level_);
    if (!ZSTD_isError(n) && n < raw.size()) {
      packed = n;
      codec = Codec::Zstd;
    }
  }
  if (codec == Codec::Raw) {
    out.append(src, raw.size());
  } else {
    out.append(scratch_.data(), packed);
  }
  return codec;
}

Decompressor::Decompressor() {
  zstd_ = ZSTD_createDCtx();
  if (!zstd_) throw std::bad_alloc();
}

Decompressor::~Decompressor() { ZSTD_freeDCtx(zstd_); }

bool Decompressor::decompress(Codec codec, std::span<const uint8_t> stored, std::span<uint8_t> out) {
  const char* src = reinterpret_cast<const char*>(stored.data());
  switch (codec) {
    case Codec::Raw:
      if (stored.size() != out.size()) return false;
      std::memcpy(out.data(), stored.data(), out.size());
      return true;
    case Codec::Lz4: {
      if (stored.size() > static_cast<size_t>(INT32_MAX) || out.size() > static_cast<size_t>(INT32_MAX)) return false;
      // LZ4_decompress_safe never reads or writes outside the given buffers.
      const int n = LZ4_decompress_safe(src, reinterpret_cast<char*>(out.data()), static_cast<int>(stored.size()),
                                        static_cast<int>(out.size()));
      return n >= 0 && static_cast<size_t>(n) == out.size();
    }
    case Codec::Zstd: {
      // A frame that claims a different content size is refused before decoding.
      const unsigned long long claimed = ZSTD_getFrameContentSize(stored.data(), stored.size());
      if (claimed != out.size()) return false;
      const size_t n = ZSTD_decompressDCtx(zstd_, out.data(), out.size(), stored.data(), stored.size());
      return !ZSTD_isError(n) && n == out.size();
    }
    case Codec::ZeroRun:
      break;
  }
  return false;
}

uint64_t Decompressor::max_stored_bytes(Codec codec, uint64_t raw_bytes) {
  switch (codec) {
    case Codec::Raw:
      return raw_bytes;
    case Codec::Lz4:
      return raw_bytes <= static_cast<uint64_t>(LZ4_MAX_INPUT_SIZE)
                 ? static_cast<uint64_t>(LZ4_compressBound(static_cast<int>(raw_bytes)))
                 : 0;
    case Codec::Zstd:
      return ZSTD_compressBound(raw_bytes);
    case Codec::ZeroRun:
      return 0;
  }
  return 0;
}

}  // namespace tandem::checkpoint
