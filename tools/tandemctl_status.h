// tandemctl's text view of a node's status (`tandemctl status`):
//   node a  role primary  state PROTECTED  epoch 3
//   icount 123456789  peer icount 123450000  lag 6789 instr (0.007 ms)
//   log 12.3 KB/s (total 1.2 MB)  last audit @120000000 ok
//   sync: done, 3 rounds, 4.1 MB at 210.3 MB/s
//   console 127.0.0.1:7300  peer 127.0.0.1:7200
// plus "fencing: ..." with an arbiter and "error: ..." when the node reports one. Sizes are
// decimal (1 MB = 10^6 bytes).
#pragma once

#include <string>

#include "control/status.h"

namespace tandem::tools {

std::string format_status(const control::NodeStatus& status);

}  // namespace tandem::tools
