#!/usr/bin/env bash
# Offline NetFlow v5 export, topotap vs softflowd, in the same run: all read the same synthetic
# pcap (PACKETS minimum-size UDP frames over FLOWS interleaved bidirectional flows, from
# `gen_pcap`), meter it and export NetFlow v5 to their own nfcapd on 127.0.0.1:
# - topotap: the product's own command, `topotap pcap FILE --target-type netflowv5|ipfix --target
#   127.0.0.1:PORT` (the `netflowv5`/`ipfix` capture sink fed by the capture engine's feeder);
# - library: the same pipeline without the binary around it (`flow_export_pcap` example);
# - softflowd as test-peers.md says (`-c none` or it hangs, `-m` above the flow count or it
#   expires flows early).
#
# For each round and each exporter: wall time and CPU time (user+sys) of the whole process, packets/s
# from both, and what nfcapd stored (`nfdump -I`: flows, packets, bytes, sequence failures).
#
# The last lines give the medians over the rounds and topotap's speed-up on each.
#
# Usage (from the repository): bench/netflow-vs-softflowd.sh [PACKETS] [FLOWS] [ROUNDS] [netflow|ipfix]
# (ipfix: `flow_export_pcap ... ipfix` against `softflowd -v 10`).
set -euo pipefail
cd "$(dirname "$0")/.."
packets=${1:-1000000}
flows=${2:-10000}
rounds=${3:-5}
format=${4:-netflow}
case "$format" in
  netflow) version=5 target_type=netflowv5 ;;
  ipfix) version=10 target_type=ipfix ;;
  *) echo "format: netflow or ipfix" >&2; exit 2 ;;
esac
work=$(mktemp -d)
base=$((30000 + $$ % 20000))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

for tool in nfcapd nfdump softflowd; do
  command -v "$tool" >/dev/null || { echo "$tool missing: apt-get install -y nfdump softflowd" >&2; exit 1; }
done

release=${CARGO_TARGET_DIR:-target}/release
cargo build --release --locked -q -p topotap --bin topotap \
  -p topotap-targets --example flow_export_pcap --example gen_pcap
"$release"/examples/gen_pcap "$work/in.pcap" "$packets" "$flows" >/dev/null
echo "pcap: $packets packets over $flows flows, $(stat -c %s "$work/in.pcap") bytes; export: $format"
cat "$work/in.pcap" >/dev/null # warm the page cache for both

# Starts nfcapd on 127.0.0.1:$1 writing into $2 (4 MiB receive buffer: a flush is one burst).
start_nfcapd() {
  mkdir -p "$2"
  nfcapd -b 127.0.0.1 -p "$1" -w "$2" -t 3600 -B 4194304 >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    ss -uln | grep -q "127.0.0.1:$1 " && return 0
    sleep 0.05
  done
  echo "nfcapd did not start on port $1" >&2
  exit 1
}

# Stops the last nfcapd started (SIGTERM makes it write its file) and waits for it.
stop_nfcapd() {
  local p=${pids[-1]}
  kill -TERM "$p"
  wait "$p" 2>/dev/null || true
  unset 'pids[-1]'
}

# What nfcapd stored in $1: "flows packets bytes seqfail".
stored() {
  nfdump -R "$1" -I | awk -F': ' '
    /^Flows:/ {f=$2} /^Packets:/ {p=$2} /^Bytes:/ {b=$2} /^Sequence failures:/ {s=$2}
    END {print f, p, b, s}'
}

# Runs "$@" and prints "wall_s cpu_s".
timed() {
  local start end cpu
  start=$(date +%s%N)
  /usr/bin/time -f "%U %S" -o "$work/time" "$@" >/dev/null 2>&1 || true
  end=$(date +%s%N)
  cpu=$(tail -1 "$work/time")
  awk -v s="$start" -v e="$end" -v c="$cpu" 'BEGIN {split(c, a, " "); printf "%.3f %.3f\n", (e - s) / 1e9, a[1] + a[2]}'
}

printf '%-6s %-10s %8s %8s %11s %11s %8s %9s %11s %8s\n' round exporter wall_s cpu_s pps_wall pps_cpu flows packets bytes seqfail
for r in $(seq "$rounds"); do
  port=$((base + 3 * r))
  for exporter in topotap library softflowd; do
    dir="$work/$r-$exporter"
    start_nfcapd "$port" "$dir"
    case "$exporter" in
      topotap) t=$(timed "$release"/topotap pcap "$work/in.pcap" --target-type "$target_type" --target "127.0.0.1:$port") ;;
      library) t=$(timed "$release"/examples/flow_export_pcap "$work/in.pcap" "127.0.0.1:$port" "$format") ;;
      *) t=$(timed softflowd -r "$work/in.pcap" -n "127.0.0.1:$port" -v "$version" -d -c none -m $((flows * 2))) ;;
    esac
    sleep 0.3 # let nfcapd drain its socket
    stop_nfcapd
    got=$(stored "$dir")
    read -r wall cpu <<<"$t"
    read -r nf np nb ns <<<"$got"
    printf '%-6s %-10s %8s %8s %11.0f %11.0f %8s %9s %11s %8s\n' "$r" "$exporter" "$wall" "$cpu" \
      "$(echo "$packets / $wall" | bc -l)" "$(echo "$packets / $cpu" | bc -l)" "$nf" "$np" "$nb" "$ns"
    echo "$wall $cpu" >>"$work/$exporter.times"
    port=$((port + 1))
  done
done

median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for exporter in topotap library softflowd; do
  w=$(cut -d' ' -f1 "$work/$exporter.times" | median)
  c=$(cut -d' ' -f2 "$work/$exporter.times" | median)
  printf 'median %-10s wall %.3f s (%.0f pps)   cpu %.3f s (%.0f pps)\n' "$exporter" "$w" \
    "$(echo "$packets / $w" | bc -l)" "$c" "$(echo "$packets / $c" | bc -l)"
  eval "${exporter}_w=$w ${exporter}_c=$c"
done
for exporter in topotap library; do
  eval "w=\$${exporter}_w c=\$${exporter}_c"
  printf '%s speed-up over softflowd: %.2fx by wall time, %.2fx by CPU time\n' "$exporter" \
    "$(echo "$softflowd_w / $w" | bc -l)" "$(echo "$softflowd_c / $c" | bc -l)"
done
