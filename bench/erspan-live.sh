#!/usr/bin/env bash
# Live ERSPAN mirroring: inside namespace <tag>s, `tcpreplay --topspeed` feeds veth s0 whose
# peer s1 is captured by topotap with an ERSPAN target (Type II by default) and by tcpdump at
# the same time (same 16 MiB kernel buffer). The mirrored GRE packets go from topotap's (root)
# namespace over the veth <tag>cv to the collector namespace <tag>c, where a raw GRE socket
# (socat) receives them and the interface counters count them.
#
# Reports: packets offered, captured by topotap and by tcpdump (and their kernel drops),
# mirrored packets sent (topotap's export counters) and received by the collector, the
# forwarding rate and the loss (offered - received).
#
# Usage (root, from the repository):
#   bench/erspan-live.sh [PACKETS] [FLOWS] [erspanv1|erspanv2] [PPS]
# PPS replays at that rate (tcpreplay --pps) instead of --topspeed, to find the highest
# rate mirrored with zero loss.
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-1000000}
flows=${2:-10000}
kind=${3:-erspanv1}
pps=${4:-}
if [ -n "$pps" ]; then speed=(--pps="$pps"); else speed=(--topspeed); fi
tag=el$$
work=$(mktemp -d)
port=$((20000 + $$ % 20000))
net=$((1 + $$ % 250))
cleanup() {
  [ -n "${tt:-}" ] && kill "$tt" 2>/dev/null || true
  [ -n "${td:-}" ] && kill "$td" 2>/dev/null || true
  [ -n "${sc:-}" ] && kill "$sc" 2>/dev/null || true
  ip netns del "${tag}s" 2>/dev/null || true
  ip netns del "${tag}c" 2>/dev/null || true
  ip link del "${tag}cv" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked -q --bin topotap
cargo run --release --locked -q -p topotap-targets --example gen_pcap -- "$work/in.pcap" "$packets" "$flows"

# Source namespace: s0 (tcpreplay) <-> s1 (captured).
ip netns add "${tag}s"
ip -n "${tag}s" link add s0 type veth peer name s1
ip -n "${tag}s" link set s0 up
ip -n "${tag}s" link set s1 up
# Collector namespace, reached from the root namespace over a veth.
ip netns add "${tag}c"
ip link add "${tag}cv" type veth peer name eth0 netns "${tag}c"
ip addr add "10.214.$net.1/24" dev "${tag}cv"
ip link set "${tag}cv" up
ip -n "${tag}c" addr add "10.214.$net.2/24" dev eth0
ip -n "${tag}c" link set eth0 up
ip -n "${tag}c" link set lo up
# A GRE receiver, so the collector's kernel does not answer with ICMP unreachables.
ip netns exec "${tag}c" socat -u IP4-RECV:47,rcvbuf=4194304 /dev/null &
sc=$!

target/release/topotap allinone --listen "127.0.0.1:$port" --ovsdb none \
  --state-dir "$work/state" >"$work/topotap.out" 2>"$work/topotap.err" &
tt=$!
for _ in $(seq 100); do grep -q listening "$work/topotap.out" 2>/dev/null && break; sleep 0.1; done
api=http://127.0.0.1:$port
q() { curl -sf -H 'Content-Type: application/json' -XPOST "$api/api/topology" -d "{\"GremlinQuery\":\"$1\"}"; }
for _ in $(seq 100); do
  [ "$(q "G.V().Has('Name','${tag}s').Out().Has('Name','s1').Count()")" = 1 ] && break; sleep 0.1
done
uuid=$(curl -sf -H 'Content-Type: application/json' -XPOST "$api/api/capture" \
  -d "{\"GremlinQuery\":\"G.V().Has('Name','${tag}s').Out().Has('Name','s1')\",\"Target\":\"10.214.$net.2:0\",\"TargetType\":\"$kind\"}" |
  sed 's/.*"UUID":"\([^"]*\)".*/\1/')
for _ in $(seq 100); do
  [ "$(q "G.V().Has('Captures.State','active').Count()")" = 1 ] && break; sleep 0.1
done

ip netns exec "${tag}s" tcpdump -i s1 -B 16384 -n -q -w /dev/null 2>"$work/tcpdump.err" &
td=$!
sleep 1
rx0=$(ip netns exec "${tag}c" cat /sys/class/net/eth0/statistics/rx_packets)

start=$(date +%s.%N)
ip netns exec "${tag}s" tcpreplay -q -i s0 "${speed[@]}" "$work/in.pcap" >"$work/tcpreplay.out" 2>&1
end=$(date +%s.%N)
sleep 2
kill -INT "$td"; wait "$td" || true; td=
rx1=$(ip netns exec "${tag}c" cat /sys/class/net/eth0/statistics/rx_packets)
stats=$(q "G.V().Has('Name','s1').Has('Captures.ID','$uuid').Values('Captures')")

field() { echo "$stats" | grep -o "\"$1\":[0-9]*" | head -1 | cut -d: -f2; }
recv=$(field PacketsReceived)
drop=$(field PacketsDropped)
sent=$(field Messages)
errors=$(field SendErrors)
td_cap=$(grep -o '^[0-9]* packets captured' "$work/tcpdump.err" | cut -d' ' -f1)
td_drop=$(grep -o '^[0-9]* packets dropped by kernel' "$work/tcpdump.err" | cut -d' ' -f1)
rate=$(grep -o 'Rated: [0-9.]* Bps, [0-9.]* Mbps, [0-9.]* pps' "$work/tcpreplay.out" | sed 's/.*, \([0-9.]*\) pps/\1/')
secs=$(echo "$end - $start" | bc)
received=$((rx1 - rx0))

echo "offered:   $packets packets over $flows flows, tcpreplay ${rate:-?} pps ($secs s)"
echo "topotap:   captured $recv, kernel drops $drop; $kind packets sent $sent, send errors $errors"
echo "collector: received $received ($(echo "scale=0; $received / $secs" | bc) pps over the replay), loss $((packets - received)) ($(echo "scale=2; 100 * ($packets - $received) / $packets" | bc) %)"
echo "tcpdump:   captured $td_cap, kernel drops $td_drop"
