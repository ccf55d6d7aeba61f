#!/usr/bin/env bash
# A whole fleet on one machine, as tests/fleet_scenario.rs runs it: etcd on loopback,
# two analyzers replicating to each other, and three agents, each in a network namespace
# of its own (host1..host3) joined to a bridge, each reporting to both analyzers.
#
#   sudo examples/fleet-local.sh [TOPOTAP_BIN]      # Ctrl-C stops and removes it all
#
# Then: http://10.215.0.254:8082 (analyzer A's UI) or :8083 (B), or
#   topotap client --analyzer 10.215.0.254:8083 topology query --gremlin "G.V().Has('Type','host')"
# and `ip netns exec fleet-host2 ip link add ...` or
#   touch /tmp/fleet-local/netns2/new && unshare --net=/tmp/fleet-local/netns2/new true
# to see host 2 change on both analyzers. The analyzers listen on the bridge without
# authentication (--insecure-no-auth): a demonstration, not a deployment (README.md,
# "Fleet mode").
set -euo pipefail
BIN=${1:-$(command -v topotap || echo target/debug/topotap)}
DIR=/tmp/fleet-local
NET=10.215.0
[ "$(id -u)" = 0 ] || { echo "run as root (namespaces, veths, a bridge)" >&2; exit 1; }
command -v etcd >/dev/null || { echo "etcd is needed (apt-get install etcd-server)" >&2; exit 1; }

pids=()
cleanup() {
  set +e
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  wait 2>/dev/null
  for i in 1 2 3; do
    for f in "$DIR/netns$i"/*; do [ -e "$f" ] && umount "$f" 2>/dev/null && rm -f "$f"; done
    umount -l "$DIR/netns$i" 2>/dev/null
    ip netns del "fleet-host$i" 2>/dev/null
  done
  ip link del fleet-br 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT INT TERM

mkdir -p "$DIR"
etcd --name fleet --data-dir "$DIR/etcd" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 >"$DIR/etcd.log" 2>&1 &
pids+=($!)
until etcdctl --endpoints http://127.0.0.1:2379 endpoint health >/dev/null 2>&1; do sleep 0.2; done

ip link add fleet-br type bridge
ip addr add $NET.254/24 dev fleet-br
ip link set fleet-br up
for i in 1 2 3; do
  ns=fleet-host$i
  ip netns add $ns
  ip link add fleet-v$i type veth peer name eth0 netns $ns
  ip link set fleet-v$i master fleet-br up
  ip -n $ns addr add $NET.$i/24 dev eth0
  ip -n $ns link set eth0 up
  ip -n $ns link set lo up
  # A netns directory of the host's own, shared into the agent's mount namespace.
  mkdir -p "$DIR/netns$i"
  mount --bind "$DIR/netns$i" "$DIR/netns$i"
  mount --make-private "$DIR/netns$i" && mount --make-shared "$DIR/netns$i"
done

for side in a:8082:8083 b:8083:8082; do
  IFS=: read -r name port peer <<<"$side"
  mkdir -p "$DIR/analyzer-$name"
  "$BIN" analyzer --host-id "analyzer-$name" --listen $NET.254:"$port" --peer $NET.254:"$peer" \
    --etcd http://127.0.0.1:2379 --state-dir "$DIR/analyzer-$name" --insecure-no-auth \
    >"$DIR/analyzer-$name.out" 2>"$DIR/analyzer-$name.log" &
  pids+=($!)
done
sleep 1
for i in 1 2 3; do
  mkdir -p "$DIR/agent$i"
  # A PID namespace of its own too, so its /proc scan sees only this host.
  ip netns exec fleet-host$i unshare --pid --fork --kill-child --mount-proc --propagation slave \
    "$BIN" agent --host-id host$i --analyzer $NET.254:8082,$NET.254:8083 \
    --listen 127.0.0.1:8081 --ovsdb none --netns-path "$DIR/netns$i" \
    --state-dir "$DIR/agent$i" >"$DIR/agent$i.out" 2>"$DIR/agent$i.log" &
  pids+=($!)
done

echo "etcd 127.0.0.1:2379; analyzers http://$NET.254:8082 and :8083; agents host1..host3"
echo "logs in $DIR; Ctrl-C stops everything"
wait
