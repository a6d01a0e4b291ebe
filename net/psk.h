// The pair's pre-shared key file, read the same way by tandemd, tandem-witness and the tools.
#pragma once

#include <cstddef>
#include <string>

namespace tandem::net {

inline constexpr size_t kMinPskBytes = 16;    // the link's minimum (replicator/transport/link.h)
inline constexpr size_t kMaxPskBytes = 4096;  // a bigger "key" is almost surely the wrong file

// Reads the PSK file at `path`: a regular file of at most kMaxPskBytes whose bytes, trailing
// line breaks dropped (so `openssl rand -hex 32 > FILE` works on every host alike), are at
// least kMinPskBytes, and that neither its group nor others may read (like ssh's keys).
// Throws std::invalid_argument naming the quoted path and the problem, e.g.
//   "/etc/tandem/pair.psk" is readable by its group or others (mode 0644): `chmod 600 /etc/tandem/pair.psk`
std::string load_psk(const std::string& path);

}  // namespace tandem::net
