#pragma once
// Makes the hashes of a checkpoint stream (checkpoint/format.h) match its bytes: each Raw
// record's XXH3 and the trailer's stream XXH3. The fuzzer cannot forge hashes, so without
// this a mutated stream would almost never get past the trailer check; with it the record
// walk, the bounds, the codecs and the core state are explored. Compressed records keep
// their hash (it is over the decompressed bytes).
#include <xxhash.h>

#include <cstring>
#include <string>

#include "checkpoint/format.h"

namespace tandem::fuzz {

inline std::string fix_checkpoint_hashes(std::string s) {
  namespace f = checkpoint::format;
  if (s.size() < f::kHeaderBytes + f::kTrailerBytes) return s;
  const size_t trailer = s.size() - f::kTrailerBytes;
  size_t at = f::kHeaderBytes;
  while (at + f::kRecordHeaderBytes <= trailer) {
    const auto stored = f::get<uint32_t>(s.data() + at + 4);
    const size_t payload = at + f::kRecordHeaderBytes;
    if (stored > trailer - payload) break;
    if (static_cast<f::Codec>(s[at + 1]) == f::Codec::Raw) {
      f::put<uint64_t>(s.data() + at + 24, XXH3_64bits(s.data() + payload, stored));
    }
    at = payload + stored;
  }
  f::put<uint64_t>(s.data() + s.size() - 8, XXH3_64bits(s.data(), s.size() - 8));
  return s;
}

}  // namespace tandem::fuzz
