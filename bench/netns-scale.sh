#!/usr/bin/env bash
# Topology convergence at scale, measured on the real topotap through its API:
# N namespaces, each joined to the root namespace by a veth pair, created with one
# `ip -batch`; reports the time from that command's return until
# G.V().Has('Type','veth').Count() shows all 2N ends, topotap's peak RSS (VmHWM),
# and the same for deleting them all.
#
# Usage (root, from the repository): bench/netns-scale.sh [N]   (default 200)
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
p=ns$(printf %04x $((RANDOM % 65536)))
work=$(mktemp -d)
port=$((20000 + $$ % 20000))
cleanup() {
  [ -n "${tt:-}" ] && kill "$tt" 2>/dev/null || true
  for i in $(seq "$n"); do echo "netns del ${p}n$i"; done >"$work/del"
  ip -force -batch "$work/del" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cargo build --release --locked -q --bin topotap
target/release/topotap allinone --listen "127.0.0.1:$port" --ovsdb none \
  --state-dir "$work/state" >"$work/out" 2>"$work/err" &
tt=$!
for _ in $(seq 100); do grep -q listening "$work/out" 2>/dev/null && break; sleep 0.1; done
api=http://127.0.0.1:$port
ends() {  # veth ends of this run: the root ends are named ${p}rI, the namespace ends ${p}cI
  curl -sf -H 'Content-Type: application/json' -XPOST "$api/api/topology" \
    -d "{\"GremlinQuery\":\"G.V().Has('Type','veth','Name',REGEX('${p}[rc][0-9]+')).Count()\"}"
}
now_ms() { date +%s%3N; }
sleep 1
base=$(ends)

for i in $(seq "$n"); do
  echo "netns add ${p}n$i"
  echo "link add ${p}r$i type veth peer name ${p}c$i netns ${p}n$i"
done >"$work/add"
t0=$(now_ms)
ip -batch "$work/add"
t1=$(now_ms)
want=$((base + 2 * n))
until [ "$(ends)" = "$want" ]; do
  [ $(( $(now_ms) - t1 )) -gt 60000 ] && { echo "not converged: $(ends)/$want"; exit 1; }
  sleep 0.005
done
t2=$(now_ms)
rss=$(awk '/VmHWM/ {print $2}' "/proc/$tt/status")
total_veth=$(curl -sf -H 'Content-Type: application/json' -XPOST "$api/api/topology" -d "{\"GremlinQuery\":\"G.V().Has('Type','veth').Count()\"}")

for i in $(seq "$n"); do echo "netns del ${p}n$i"; done >"$work/del"
t3=$(now_ms)
ip -batch "$work/del"
t4=$(now_ms)
until [ "$(ends)" = "$base" ]; do
  [ $(( $(now_ms) - t4 )) -gt 60000 ] && { echo "not reconverged: $(ends)"; exit 1; }
  sleep 0.005
done
t5=$(now_ms)
rss2=$(awk '/VmHWM/ {print $2}' "/proc/$tt/status")

echo "create: ip -batch took $((t1 - t0)) ms; all $((2 * n)) veth ends in the API $((t2 - t1)) ms after it returned (G.V().Has('Type','veth').Count() = $total_veth)"
echo "delete: ip -batch took $((t4 - t3)) ms; all gone from the API $((t5 - t4)) ms after it returned"
echo "topotap peak RSS: $((rss / 1024)) MB after create, $((rss2 / 1024)) MB after delete"
