#!/usr/bin/env bash
# make bench: runs every benchmark suite (bench/<suite>/run.sh BUILD_DIR) in turn.
# Each suite measures Tandem and its reference side by side in the same run and prints ratios.
set -euo pipefail
build=$(realpath "${1:-build}")
here=$(dirname "$(realpath "$0")")
status=0
for suite in "$here"/*/run.sh; do
  [ -e "$suite" ] || continue
  echo "=== bench: $(basename "$(dirname "$suite")")"
  bash "$suite" "$build" || status=1
done
exit $status
