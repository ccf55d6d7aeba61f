#!/usr/bin/env bash
# Live capture: a veth fed by `tcpreplay --topspeed` inside a namespace, captured on
# its peer by topotap (local flow table) and by tcpdump at the same time, with the same
# kernel buffer (16 MiB). Reports packets offered, captured and dropped by each.
#
# Also reports the CPU time the topotap process spent while the packets arrived, per
# packet received.
#
# Usage (root, from the repository): bench/live-capture.sh [PACKETS] [FLOWS]
# TOPOTAP_BIN=path runs that binary instead of building target/release/topotap (to
# compare two builds in the same run: bench/live-capture-compare.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-1000000}
flows=${2:-10000}
tag=lc$$
work=$(mktemp -d)
port=$((20000 + $$ % 20000))
cleanup() {
  [ -n "${tt:-}" ] && kill "$tt" 2>/dev/null || true
  [ -n "${td:-}" ] && kill "$td" 2>/dev/null || true
  ip netns del "$tag" 2>/dev/null || true
  ip link del "${tag}r" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

release=${CARGO_TARGET_DIR:-target}/release
if [ -z "${TOPOTAP_BIN:-}" ]; then
  cargo build --release --locked -q --bin topotap
fi
bin=${TOPOTAP_BIN:-$release/topotap}
cargo run --release --locked -q -p topotap-targets --example gen_pcap -- "$work/in.pcap" "$packets" "$flows"

ip netns add "$tag"
ip link add "${tag}r" type veth peer name "${tag}t" netns "$tag"
ip link set "${tag}r" up
ip -n "$tag" link set "${tag}t" up

"$bin" allinone --listen "127.0.0.1:$port" --ovsdb none \
  --state-dir "$work/state" >"$work/topotap.out" 2>"$work/topotap.err" &
tt=$!
for _ in $(seq 100); do grep -q listening "$work/topotap.out" 2>/dev/null && break; sleep 0.1; done
api=http://127.0.0.1:$port
uuid=$(curl -sf -H 'Content-Type: application/json' -XPOST "$api/api/capture" \
  -d "{\"GremlinQuery\":\"G.V().Has('Name','${tag}r')\"}" | sed 's/.*"UUID":"\([^"]*\)".*/\1/')
q() { curl -sf -H 'Content-Type: application/json' -XPOST "$api/api/topology" -d "{\"GremlinQuery\":\"$1\"}"; }
for _ in $(seq 100); do
  [ "$(q "G.V().Has('Captures.State','active').Count()")" = 1 ] && break; sleep 0.1
done

tcpdump -i "${tag}r" -B 16384 -n -q -w /dev/null 2>"$work/tcpdump.err" &
td=$!
sleep 1

# utime + stime of the topotap process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$tt/stat"; }
cpu0=$(cpu_ticks)
start=$(date +%s.%N)
ip netns exec "$tag" tcpreplay -q -i "${tag}t" --topspeed "$work/in.pcap" >"$work/tcpreplay.out" 2>&1
end=$(date +%s.%N)
sleep 2
cpu1=$(cpu_ticks)
kill -INT "$td"; wait "$td" || true; td=
stats=$(q "G.V().Has('Name','${tag}r').Values('Captures')")
flowcount=$(q "G.Flows().Has('CaptureID','$uuid').Count()")

recv=$(echo "$stats" | sed 's/.*"PacketsReceived":\([0-9]*\).*/\1/')
drop=$(echo "$stats" | sed 's/.*"PacketsDropped":\([0-9]*\).*/\1/')
ifdrop=$(echo "$stats" | sed 's/.*"PacketsIfDropped":\([0-9]*\).*/\1/')
td_cap=$(grep -o '^[0-9]* packets captured' "$work/tcpdump.err" | cut -d' ' -f1)
td_drop=$(grep -o '^[0-9]* packets dropped by kernel' "$work/tcpdump.err" | cut -d' ' -f1)
rate=$(grep -o 'Rated: [0-9.]* Bps, [0-9.]* Mbps, [0-9.]* pps' "$work/tcpreplay.out" | sed 's/.*, \([0-9.]*\) pps/\1/')

echo "offered:  $packets packets over $flows flows, tcpreplay ${rate:-?} pps ($(echo "$end - $start" | bc) s)"
hz=$(getconf CLK_TCK)
cpu_s=$(echo "scale=3; ($cpu1 - $cpu0) / $hz" | bc)
per=${recv:-0}
[ "$per" -gt 0 ] 2>/dev/null || per=1
ns_pkt=$(echo "scale=0; ($cpu1 - $cpu0) * 1000000000 / $hz / $per" | bc)
echo "topotap:  received $recv, kernel drops $drop, interface drops $ifdrop, flows in table $flowcount"
echo "topotap:  cpu $cpu_s s, $ns_pkt ns per packet received"
echo "tcpdump:  captured $td_cap, kernel drops $td_drop"
