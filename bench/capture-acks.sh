#!/usr/bin/env bash
# Capture creations acknowledged per second with 10, 1,000 and 10,000 captures already
# stored, before and after the append-only capture log, in the same run.
#
# usage: bench/capture-acks.sh [BEFORE_COMMIT] [COUNT]
#   BEFORE_COMMIT  the whole-file store to compare with (default 9c1ae0e)
#   COUNT          creations timed per run (default 200)
#
# Both binaries are debug builds sharing this tree's target/ (the old one is built in a
# temporary worktree and copied out). Each run starts `topotap allinone --no-probes` on a
# fresh state dir under $TMPDIR (a real disk: fsync matters) that holds N captures in the
# old one-file format (captures.json, which the new store moves to its log at startup),
# then POSTs COUNT captures through /api/capture from 1 and from 16 clients.
set -euo pipefail
cd "$(dirname "$0")/.."
before=${1:-9c1ae0e}
count=${2:-200}
work=$(mktemp -d)
old_tree="$work/old-tree"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  git worktree remove --force "$old_tree" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

git worktree add -q --detach "$old_tree" "$before"
(cd "$old_tree" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --locked -q --bin topotap)
cp target/debug/topotap "$work/topotap-before"
# Cargo names a workspace crate's artifacts the same in both trees and takes the old
# tree's as fresh: make it rebuild this tree's.
find grammar topology probes targets src -name '*.rs' -exec touch {} +
cargo build --locked -q --bin topotap
cp target/debug/topotap "$work/topotap-after"

# captures.json holding N captures, in the format both versions read.
populate() {
  python3 - "$1" "$2" <<'PY'
import json, sys, uuid
dir, n = sys.argv[1], int(sys.argv[2])
entries = [{"resource": {"UUID": str(uuid.uuid4()),
                         "GremlinQuery": f"G.V().Has('Name', 'stored-{i}')",
                         "SamplingRate": 1, "PollingInterval": 0, "ExtraTCPMetric": False,
                         "IPDefrag": False, "ReassembleTCP": False, "LayerKeyMode": "L2"}}
           for i in range(n)]
json.dump(entries, open(f"{dir}/captures.json", "w"), indent=2)
PY
}

run() { # binary stored clients
  local state="$work/state-$RANDOM$RANDOM"
  mkdir -p "$state"
  populate "$state" "$2"
  : >"$state.out"
  "$1" allinone --listen 127.0.0.1:0 --no-probes --state-dir "$state" \
    >"$state.out" 2>"$state.err" &
  local pid=$!
  pids+=("$pid")
  local addr=""
  for _ in $(seq 100); do
    addr=$(sed -n 's|^listening on http://||p' "$state.out")
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { cat "$state.err"; exit 1; }
  local listed
  listed=$(curl -sf "http://$addr/api/capture" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$listed" = "$2" ] || { echo "loaded $listed of $2 captures"; exit 1; }
  python3 bench/capture_acks.py "$addr" "$count" "$3" "$RANDOM"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$state" "$state.out" "$state.err"
}

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-8s %8s %8s %14s %14s\n' stored clients count "before acks/s" "after acks/s"
for clients in 1 16; do
  for stored in 10 1000 10000; do
    b=$(run "$work/topotap-before" "$stored" "$clients")
    a=$(run "$work/topotap-after" "$stored" "$clients")
    printf '%-8s %8s %8s %14s %14s\n' "$stored" "$clients" "$count" "$b" "$a"
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
