#!/usr/bin/env bash
# The live capture benchmark (bench/live-capture.sh) on two builds in the same run,
# alternating them round by round so both see the same machine.
#
# Usage (root, from the repository):
#   bench/live-capture-compare.sh BEFORE_BIN AFTER_BIN [ROUNDS] [PACKETS] [FLOWS]
set -euo pipefail
cd "$(dirname "$0")/.."
before=$(realpath "$1")
after=$(realpath "$2")
rounds=${3:-3}
packets=${4:-1000000}
flows=${5:-10000}
for round in $(seq "$rounds"); do
  for which in before after; do
    bin=$before
    [ "$which" = after ] && bin=$after
    echo "== round $round: $which ($bin)"
    TOPOTAP_BIN=$bin bench/live-capture.sh "$packets" "$flows"
  done
done
