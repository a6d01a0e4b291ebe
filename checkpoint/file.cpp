// Checkpoint files: written atomically (a crash leaves the old file or the new one, never
// a torn one), read whole and applied.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>

#include "checkpoint/checkpoint.h"
#include "vmm/machine.h"

namespace tandem::checkpoint {

namespace {

[[noreturn]] void fail_errno(const std::string& what, const std::string& path) {
  throw CheckpointError("checkpoint: " + what + " " + path + ": " + std::strerror(errno));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

void write_all(int fd, std::string_view bytes, const std::string& path) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) fail_errno("cannot write", path);
    done += static_cast<size_t>(n);
  }
}

}  // namespace

void save_file(vmm::Machine& machine, const std::string& path, const Options& options, Stats* stats) {
  // The temporary lives beside the target so the rename stays within one filesystem.
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  {
    Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (fd.get() < 0) fail_errno("cannot create", tmp);
    try {
      // Streamed straight to the file: a big machine never has its checkpoint in memory.
      const Stats s = write_full(machine, [&](std::string_view chunk) { write_all(fd.get(), chunk, tmp); }, options);
      if (stats) *stats = s;
      if (::fsync(fd.get()) != 0) fail_errno("cannot fsync", tmp);
      if (::close(fd.release()) != 0) fail_errno("cannot close", tmp);
    } catch (...) {
      ::unlink(tmp.c_str());
      throw;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(tmp.c_str());
    errno = saved;
    fail_errno("cannot rename " + tmp + " to", path);
  }
  // The rename is durable only once the directory is.
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() < 0 || ::fsync(dfd.get()) != 0) fail_errno("cannot fsync directory", dir);
}

void load_file(vmm::Machine& machine, const std::string& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail_errno("cannot open snapshot", path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) fail_errno("cannot stat", path);
  if (!S_ISREG(st.st_mode)) throw CheckpointError("checkpoint: " + path + " is not a regular file");
  std::string stream(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < stream.size()) {
    const ssize_t n = ::read(fd.get(), stream.data() + done, stream.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) fail_errno("cannot read", path);
    if (n == 0) break;  // shrank while we read: the checks below see a short stream
    done += static_cast<size_t>(n);
  }
  stream.resize(done);
  try {
    checkpoint::apply(machine, stream);  // qualified: std::apply would win by ADL
  } catch (const CheckpointError& e) {
    // Name the file: "snapshot PATH: <what is wrong, and where>".
    std::string what = e.what();
    const std::string prefix = "checkpoint: ";
    if (what.starts_with(prefix)) what.erase(0, prefix.size());
    throw CheckpointError("snapshot " + path + ": " + what);
  }
}

}  // namespace tandem::checkpoint
