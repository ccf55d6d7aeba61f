#!/usr/bin/env bash
# Namespace scale benchmark for the live probes (run as root, from the workspace root):
#   probes/bench/netns-scale.sh [N]        (default N=200)
# Creates N namespaces, each joined to the root namespace by a veth pair, with one
# `ip -batch`; reports how long after that command returned all 2N veth ends were in
# the graph with their N veth edges, the probe process' peak RSS (VmHWM), and the same for deleting them all.
# The probes run in `probes/examples/watch.rs`, which prints a line per graph change.
set -euo pipefail
N=${1:-200}
P=bn$(printf %04x $((RANDOM % 65536)))
cargo build -q --release -p topotap-probes --example watch
BIN=target/release/examples/watch
OUT=$(mktemp)
BATCH=$(mktemp)

cleanup() {
    [[ -n "${PID:-}" ]] && kill "$PID" 2>/dev/null || true
    for i in $(seq 1 "$N"); do echo "netns del ${P}n$i"; done > "$BATCH"
    ip -force -batch "$BATCH" 2>/dev/null || true
    for i in $(seq 1 "$N"); do ip link del "${P}r$i" 2>/dev/null || true; done
    rm -f "$OUT" "$BATCH"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
# Waits until the watcher printed a line matching $1; prints that line's timestamp.
wait_line() {
    local deadline=$(( $(now_ms) + 60000 ))
    while (( $(now_ms) < deadline )); do
        local line
        line=$(grep -E "$1" "$OUT" | head -1 || true)
        if [[ -n "$line" ]]; then echo "${line%% *}"; return 0; fi
        sleep 0.01
    done
    echo "timeout waiting for $1" >&2; tail -3 "$OUT" >&2; return 1
}

"$BIN" "$P" > "$OUT" 2>/dev/null &
PID=$!
while ! grep -q '^ready' "$OUT"; do sleep 0.01; done
sleep 0.5
rss_idle=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

for i in $(seq 1 "$N"); do
    echo "netns add ${P}n$i"
    echo "link add ${P}r$i type veth peer name ${P}p$i netns ${P}n$i"
done > "$BATCH"
t0=$(now_ms)
ip -batch "$BATCH"
t1=$(now_ms)
tc=$(wait_line " veth=$((2 * N)) netns=$N pairs=$N ")
hwm=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)
sleep 2
rss_steady=$(awk '/VmRSS/ {print $2}' /proc/$PID/status)

for i in $(seq 1 "$N"); do echo "netns del ${P}n$i"; done > "$BATCH"
d0=$(now_ms)
# Only lines printed after the deletion starts count for reconvergence.
lines_before=$(wc -l < "$OUT")
ip -batch "$BATCH"
d1=$(now_ms)
deadline=$(( $(now_ms) + 60000 ))
td=""
while (( $(now_ms) < deadline )); do
    td=$(tail -n +"$((lines_before + 1))" "$OUT" | grep -E ' veth=0 netns=0 ' | head -1 | cut -d' ' -f1 || true)
    [[ -n "$td" ]] && break
    sleep 0.01
done
hwm_end=$(awk '/VmHWM/ {print $2}' /proc/$PID/status)

echo "namespaces: $N, veth ends: $((2 * N))"
echo "create: ip -batch took $((t1 - t0)) ms; all ends in graph $((tc - t1)) ms after it returned ($((tc - t0)) ms after it started)"
echo "delete: ip -batch took $((d1 - d0)) ms; graph empty of them $((td - d1)) ms after it returned"
echo "RSS: idle ${rss_idle} kB, peak (VmHWM) after create ${hwm} kB, steady ${rss_steady} kB, peak at end ${hwm_end} kB"
