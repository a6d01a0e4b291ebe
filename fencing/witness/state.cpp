// The witness's state file: "TWSTATE1" | u64 LE body length | WitnessState | u64 LE XXH3-64(body).
#include "fencing/witness/state.h"

#include <xxhash.h>

#include <fmt/format.h>
#include <optional>

#include "net/durable_file.h"

#include "proto/fencing.pb.h"

namespace tandem::fencing {

namespace {

constexpr std::string_view kStateMagic = "TWSTATE1";
constexpr size_t kStateOverhead = 8 + 8 + 8;

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

}  // namespace

// Atomic and durable (net::write_file_durably): a crash leaves the old state or the new one.
void save_witness_state(const std::string& path, const WitnessRecords& leases) {
  wire::WitnessState state;
  for (const auto& [vm_id, lease] : leases) {
    auto* record = state.add_leases();
    record->set_vm_id(vm_id);
    record->set_epoch(lease.epoch);
    record->set_holder(lease.holder);
    record->set_ttl_ms(static_cast<uint64_t>(lease.ttl.count()));
    record->set_replica_floor(lease.replica_floor);
  }
  const std::string body = state.SerializeAsString();
  std::string bytes(kStateMagic);
  put_u64(bytes, body.size());
  bytes += body;
  put_u64(bytes, XXH3_64bits(body.data(), body.size()));
  net::write_file_durably(path, bytes);
}

// A missing file is a first start (empty). Anything else that is not a whole, checksummed
// state is a StateFileError: starting empty could grant an old epoch a second time.
WitnessRecords load_witness_state(const std::string& path) {
  WitnessRecords leases;
  std::optional<std::string> content;
  try {
    content = net::read_small_file(path, 64u << 20);
  } catch (const net::FileTooLarge& e) {
    throw StateFileError(fmt::format("state file {} is corrupt: {}", path, e.what()));
  } catch (const std::exception& e) {
    throw std::runtime_error(fmt::format("cannot read state file: {}", e.what()));
  }
  if (!content) return leases;
  const std::string& bytes = *content;
  const auto corrupt = [&](const std::string& why) {
    return StateFileError(fmt::format("state file {} is corrupt: {} (refusing to start: an empty state could "
                                      "grant an epoch twice; restore it or remove it deliberately)",
                                      path, why));
  };
  if (bytes.size() < kStateMagic.size() || std::string_view(bytes).substr(0, kStateMagic.size()) != kStateMagic) {
    throw corrupt("not a tandem-witness state file (bad magic)");
  }
  if (bytes.size() < kStateOverhead) throw corrupt(fmt::format("truncated ({} bytes)", bytes.size()));
  const uint64_t body_size = get_u64(bytes.data() + 8);
  if (body_size != bytes.size() - kStateOverhead) {
    throw corrupt(fmt::format("length field says {} body bytes, the file holds {}", body_size,
                              bytes.size() - kStateOverhead));
  }
  const std::string_view body(bytes.data() + 16, body_size);
  const uint64_t stored = get_u64(bytes.data() + 16 + body_size);
  if (stored != XXH3_64bits(body.data(), body.size())) throw corrupt("checksum mismatch");
  wire::WitnessState state;
  if (!state.ParseFromArray(body.data(), static_cast<int>(body.size()))) throw corrupt("unparsable body");
  for (const auto& record : state.leases()) {
    if (record.vm_id().empty() || leases.contains(record.vm_id())) {
      throw corrupt(fmt::format("empty or duplicate vm_id \"{}\"", record.vm_id()));
    }
    if (record.replica_floor() > record.epoch()) {
      throw corrupt(fmt::format("vm_id \"{}\": replica floor {} above its epoch {}", record.vm_id(),
                                record.replica_floor(), record.epoch()));
    }
    leases.emplace(record.vm_id(), WitnessRecord{record.epoch(), record.holder(),
                                                 std::chrono::milliseconds(record.ttl_ms()), record.replica_floor()});
  }
  return leases;
}

}  // namespace tandem::fencing
