#!/usr/bin/env bash
# Placer CPU while captures are idle: one namespace with N veth interfaces, one capture
# on each (no traffic), then the CPU time (user + system, every thread) topotap uses over
# SECONDS, and how many times the captured nodes' metadata was rewritten meanwhile.
# Runs every binary given, one after the other, on the same fixture.
#
# Usage (root, from the repository):
#   bench/placer-idle.sh [N] [SECONDS] BINARY...
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100}
secs=${2:-30}
shift 2
tag=pi$$
work=$(mktemp -d)
port=$((20000 + $$ % 20000))
cleanup() {
  [ -n "${tt:-}" ] && kill "$tt" 2>/dev/null || true
  ip netns del "$tag" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$tag"
for i in $(seq "$n"); do
  echo "link add d$i type veth peer name e$i"
  echo "link set d$i up"
done | ip -n "$tag" -batch -
ticks=$(getconf CLK_TCK)
api=http://127.0.0.1:$port
q() { curl -sf -XPOST -H "Content-Type: application/json" "$api/api/topology" -d "{\"GremlinQuery\":\"$1\"}"; }
# Sum of the revisions of the captured nodes: how many times they were rewritten.
revisions() {
  q "G.V().Has('Type','netns','Name','$tag').Out().Has('Name',REGEX('d[0-9]+'))" |
    grep -o '"Revision":[0-9]*' | awk -F: '{s += $2} END {print s + 0}'
}

for bin in "$@"; do
  rm -rf "$work/state"
  "$bin" allinone --listen "127.0.0.1:$port" --ovsdb none --state-dir "$work/state" \
    >"$work/topotap.out" 2>"$work/topotap.err" &
  tt=$!
  for _ in $(seq 100); do grep -q listening "$work/topotap.out" 2>/dev/null && break; sleep 0.1; done
  for _ in $(seq 100); do
    [ "$(q "G.V().Has('Type','netns','Name','$tag').Out().Has('Name',REGEX('d[0-9]+')).Count()")" = "$n" ] && break
    sleep 0.1
  done
  for i in $(seq "$n"); do
    curl -sf -XPOST -H "Content-Type: application/json" "$api/api/capture" \
      -d "{\"GremlinQuery\":\"G.V().Has('Type','netns','Name','$tag').Out().Has('Name','d$i')\"}" >/dev/null
  done
  for _ in $(seq 300); do
    [ "$(q "G.V().Has('Captures.State','active').Count()")" = "$n" ] && break
    sleep 0.1
  done
  active=$(q "G.V().Has('Captures.State','active').Count()")
  sleep 3
  rev0=$(revisions)
  cpu0=$(awk '{print $14 + $15}' "/proc/$tt/stat")
  sleep "$secs"
  cpu1=$(awk '{print $14 + $15}' "/proc/$tt/stat")
  rev1=$(revisions)
  kill "$tt"; wait "$tt" 2>/dev/null || true; tt=
  awk -v b="$bin" -v a="$active" -v c0="$cpu0" -v c1="$cpu1" -v t="$ticks" -v s="$secs" \
    -v r0="$rev0" -v r1="$rev1" 'BEGIN {
      cpu = (c1 - c0) / t
      rw = r1 - r0
      printf "%s: %d captures active, %.2f s CPU in %d s (%.1f%% of a core), %s node rewrites\n",
        b, a, cpu, s, 100 * cpu / s, rw
    }'
done
