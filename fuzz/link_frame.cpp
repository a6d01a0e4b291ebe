// The replication link's frame decoder and messages, through the public decode API only:
// the shared codec net::FrameReader (net/frame.h) and, while the transport still has its
// own, replicator::FrameReader (replicator/transport/frame.h). A reader cuts frames out of
// the byte stream, which arrives in pieces (their sizes from the first input byte), and
// each payload is parsed as a wire::Envelope (the handshake's Hello, HelloReply, AuthProof
// and Refused included). The stream is decoded as is, then with every frame's XXH3
// recomputed so the protobuf decoding is reached.
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "fuzz/fuzz_support.h"
#include "net/frame.h"
#include "proto/replication.pb.h"
#ifdef TANDEM_FUZZ_TRANSPORT_FRAME  // fuzz/CMakeLists.txt: set while the file exists
#include "replicator/transport/frame.h"
#endif

namespace {

template <class Reader>
void decode(const std::string& stream, size_t piece) {
  // A small limit: the decoder must refuse a longer frame before allocating for it.
  Reader reader(1u << 20);
  size_t at = 0;
  for (;;) {
    std::string_view payload;
    std::string error;
    const auto status = reader.next(payload, error);
    if (status == Reader::Status::kError) return;
    if (status == Reader::Status::kFrame) {
      tandem::wire::Envelope envelope;
      if (envelope.ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
        (void)envelope.body_case();
      }
      continue;
    }
    if (at == stream.size()) return;
    const auto area = reader.write_area(piece);
    const size_t n = std::min({piece, area.size(), stream.size() - at});
    std::memcpy(area.data(), stream.data() + at, n);
    reader.commit(n);
    at += n;
  }
}

void decode_all(const std::string& stream, size_t piece) {
  decode<tandem::net::FrameReader>(stream, piece);
#ifdef TANDEM_FUZZ_TRANSPORT_FRAME
  decode<tandem::replicator::FrameReader>(stream, piece);
#endif
}

std::string fix_checksums(std::string s) {
  size_t at = 0;
  while (at + tandem::net::kFrameHeaderBytes <= s.size()) {
    uint32_t length = 0;
    std::memcpy(&length, s.data() + at, 4);
    const size_t payload = at + tandem::net::kFrameHeaderBytes;
    if (length > s.size() - payload) break;
    const uint64_t digest = XXH3_64bits(s.data() + payload, length);
    std::memcpy(s.data() + at + 4, &digest, 8);
    at = payload + length;
  }
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  tandem::fuzz::Cursor in(data, size);
  const size_t piece = size_t{1} << (in.take<uint8_t>() % 17);  // 1 byte .. 64 KiB
  const std::string raw(in.rest());
  decode_all(raw, piece);
  const std::string fixed = fix_checksums(raw);
  if (fixed != raw) decode_all(fixed, piece);
  return 0;
}
