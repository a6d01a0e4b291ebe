#include "net/durable_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <stdexcept>

namespace tandem::net {

namespace {

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

// Writes and fsyncs `temp` (mode 0600).
void write_synced(const std::string& temp, const std::string& bytes) {
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error(fmt::format("cannot create {}: {}", temp, errno_text()));
  try {
    write_all(fd, bytes, temp);
    if (::fsync(fd) != 0) throw std::runtime_error(fmt::format("cannot fsync {}: {}", temp, errno_text()));
  } catch (...) {
    ::close(fd);
    throw;
  }
  if (::close(fd) != 0) throw std::runtime_error(fmt::format("cannot close {}: {}", temp, errno_text()));
}

void sync_directory_of(const std::string& path) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) throw std::runtime_error(fmt::format("cannot open directory {}: {}", dir, errno_text()));
  const int rc = ::fsync(dir_fd);
  ::close(dir_fd);
  if (rc != 0) throw std::runtime_error(fmt::format("cannot fsync directory {}: {}", dir, errno_text()));
}

}  // namespace

void write_file_durably(const std::string& path, const std::string& bytes) {
  const std::string temp = path + ".tmp";
  write_synced(temp, bytes);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(fmt::format("cannot rename {} to {}: {}", temp, path, errno_text()));
  }
  sync_directory_of(path);
}

void create_file_durably(const std::string& path, const std::string& bytes) {
  const std::string temp = path + ".tmp";
  write_synced(temp, bytes);
  const int rc = ::link(temp.c_str(), path.c_str());
  const int link_errno = errno;
  ::unlink(temp.c_str());
  if (rc != 0) throw std::runtime_error(fmt::format("cannot create {}: {}", path, std::strerror(link_errno)));
  sync_directory_of(path);
}

std::optional<std::string> read_small_file(const std::string& path, size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw std::runtime_error(fmt::format("cannot open {}: {}", path, errno_text()));
  }
  std::string bytes;
  char buffer[65536];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const std::string why = errno_text();
      ::close(fd);
      throw std::runtime_error(fmt::format("cannot read {}: {}", path, why));
    }
    if (n == 0) break;
    bytes.append(buffer, static_cast<size_t>(n));
    if (bytes.size() > max_bytes) {
      ::close(fd);
      throw FileTooLarge(fmt::format("larger than {} bytes", max_bytes));
    }
  }
  ::close(fd);
  return bytes;
}

}  // namespace tandem::net
