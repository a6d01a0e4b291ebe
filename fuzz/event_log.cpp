// Event log reader (vmm-hooks/event_log): the file a `tandem replay` or a secondary reads.
// Each input is a whole log file. It is read as is, then once more with every frame's XXH3
// recomputed (the fuzzer cannot forge checksums, so without this almost every mutation
// would stop at the first frame check and the protobuf and sequence checks would go
// unexplored).
#include <xxhash.h>

#include <string>

#include "fuzz/fuzz_support.h"
#include "vmm-hooks/event_log.h"

namespace {

void read_log(tandem::fuzz::MemFile& file, const std::string& bytes) {
  file.set(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  try {
    tandem::hooks::LogFileReader reader(file.path());
    (void)reader.header().config().mem_bytes();
    while (auto batch = reader.next()) {
      for (const auto& r : batch->records()) (void)r.payload().size();
    }
  } catch (const std::runtime_error&) {  // LogError included: a refusal is the expected outcome
  }
}

// The same bytes with each frame's checksum made to match its payload.
std::string fix_checksums(std::string bytes) {
  size_t at = sizeof tandem::hooks::kLogMagic;
  while (at + tandem::hooks::kFrameHeaderBytes <= bytes.size()) {
    uint32_t length = 0;
    std::memcpy(&length, bytes.data() + at, 4);
    const size_t payload = at + tandem::hooks::kFrameHeaderBytes;
    if (length > bytes.size() - payload) break;
    const uint64_t digest = XXH3_64bits(bytes.data() + payload, length);
    std::memcpy(bytes.data() + at + 4, &digest, 8);
    at = payload + length;
  }
  return bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static tandem::fuzz::MemFile file("fuzz-event-log");
  const std::string raw(reinterpret_cast<const char*>(data), size);
  read_log(file, raw);
  const std::string fixed = fix_checksums(raw);
  if (fixed != raw) read_log(file, fixed);
  return 0;
}
