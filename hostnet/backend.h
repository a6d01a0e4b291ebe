#pragma once
// Opens the host side of the guest NIC named by a --net specification (hostnet/spec.h).
#include <memory>

#include "hostnet/spec.h"
#include "vmm-hooks/net_port.h"

namespace tandem::hostnet {

// A user-mode (libslirp) or TAP backend, running its own I/O thread. Throws
// std::runtime_error with a one-line reason when it cannot be opened (a forwarded port in
// use, no permission to create a TAP device, ...).
std::unique_ptr<hooks::NetPort> open_backend(const NetSpec& spec);

}  // namespace tandem::hostnet
