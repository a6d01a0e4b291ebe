#include "net/psk.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <fmt/format.h>

#include "net/encoding.h"

namespace tandem::net {

std::string load_psk(const std::string& path) {
  const std::string name = quoted(path);
  const auto fail = [&](const std::string& problem) { throw std::invalid_argument(problem); };
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) fail(fmt::format("cannot read {}: {}", name, std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) fail(fmt::format("{} is not a regular file", name));
  if (static_cast<uint64_t>(st.st_size) > kMaxPskBytes)
    fail(fmt::format("{} holds {} bytes, more than {}: is it the right file?", name, st.st_size, kMaxPskBytes));
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(fmt::format("cannot read {}: {}", name, std::strerror(errno)));
  std::string psk{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  while (!psk.empty() && (psk.back() == '\n' || psk.back() == '\r')) psk.pop_back();
  if (psk.size() < kMinPskBytes)
    fail(fmt::format("{} holds {} bytes; a pre-shared key needs at least {} (e.g. `tandemctl keygen --out FILE` "
                     "or `openssl rand -hex 32 > FILE`)",
                     name, psk.size(), kMinPskBytes));
  if (st.st_mode & (S_IRGRP | S_IROTH))
    fail(fmt::format("{} is readable by its group or others (mode {:04o}): a pre-shared key must be "
                     "private, `chmod 600 {}`",
                     name, st.st_mode & 07777, path));
  return psk;
}

}  // namespace tandem::net
