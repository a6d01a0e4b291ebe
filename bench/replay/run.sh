#!/usr/bin/env bash
# Record/replay benchmark, side by side in one run:
#  - record overhead: `tandem record` vs `tandem run` on the CPU benchmark guest (best of 3)
#  - replay speed vs run
#  - log bandwidth of an idle guest with a 1 kHz timer (wall time, 2 s) and of the
#    key-value guest under a scripted client
set -euo pipefail
build=$(realpath "${1:-build}")
exec python3 "$(dirname "$(realpath "$0")")/measure.py" "$build"
