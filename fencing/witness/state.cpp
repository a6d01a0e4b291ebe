// The witness's state file: "TWSTATE1" | u64 LE body length | WitnessState | u64 LE XXH3-64(body).
#include "fencing/witness/state.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>

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

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const std::string& bytes, const std::string& what) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error(fmt::format("cannot write {}: {}", what, errno_text()));
    done += static_cast<size_t>(n);
  }
}

}  // namespace

// Atomic replace: temp file, fsync, rename, fsync(dir). After it returns the new state
// survives a crash or power loss; a crash before the rename leaves the old file intact.
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

  const std::string temp = path + ".tmp";
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot create {}: {}", temp, errno_text()));
  try {
    write_all(fd, bytes, temp);
    if (::fsync(fd) != 0) throw std::runtime_error(fmt::format("cannot fsync {}: {}", temp, errno_text()));
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", temp, path, errno_text()));
  }
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw std::runtime_error(fmt::format("cannot open directory {}: {}", dir, errno_text()));
  const int rc = ::fsync(dir_fd);
  ::close(dir_fd);
  if (rc != 0) throw std::runtime_error(fmt::format("cannot fsync directory {}: {}", dir, errno_text()));
}

// A missing file is a first start (empty). Anything else that is not a whole, checksummed
// state is a StateFileError: starting empty could grant an old epoch a second time.
WitnessRecords load_witness_state(const std::string& path) {
  WitnessRecords leases;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return leases;
    throw std::runtime_error(fmt::format("cannot open state file {}: {}", path, errno_text()));
  }
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      throw std::runtime_error(fmt::format("cannot read state file {}: {}", path, errno_text()));
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
    if (bytes.size() > (64u << 20)) {
      ::close(fd);
      throw StateFileError(fmt::format("state file {} is corrupt: larger than 64 MiB", path));
    }
  }
  ::close(fd);
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
