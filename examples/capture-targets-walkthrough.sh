#!/usr/bin/env bash
# Capture targets walkthrough: the blog post "How to send packets/flows to an external tool?"
# (Skydive, 2019) reproduced with topotap on a bare machine, and checked.
#
# Two "VMs" (namespaces vm1 and vm2) are joined by an Open vSwitch bridge (userspace datapath,
# no kernel module) on a "host" (namespace tt-walk-host, where ovs-vswitchd and topotap run); a
# collector (namespace tt-walk-collector) is reached from the host over a veth. For each target
# type (erspanv1, netflowv5, sflow, ipfix) the walkthrough creates a capture on vm1's eth0 aimed at
# the collector, injects 5 ICMP echo requests from vm1 to vm2, deletes the capture and shows what
# the collector's tools (tshark, nfdump) received, checking it: it exits non-zero on any mismatch.
# Everything it creates (namespaces, OVS, topotap, temporary files) is removed on exit.
# The host is a namespace rather than the machine itself so that the walkthrough leaves the
# machine's own network alone: its addresses live only in namespaces it created, and its
# ovs-vswitchd (whose userspace datapath makes a tap named ovs-netdev: one per namespace) cannot
# collide with another Open vSwitch.
#
# Usage (as root, from anywhere):  examples/capture-targets-walkthrough.sh [--debug]
#   --debug   build and run the debug binary (target/debug) instead of the release one
# Missing packages are installed with scripts/deps.sh test; cargo must be on the PATH.
# Namespaces vm1, vm2, tt-walk-host and tt-walk-collector must not exist (the Gremlin queries
# name vm1 and vm2, as in the blog post).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
PROFILE=release
case "${1:-}" in
  "") ;;
  --debug) PROFILE=debug ;;
  -h | --help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
esac

HOST_NS=tt-walk-host
COLLECTOR_NS=tt-walk-collector
COLLECTOR=192.168.77.2 # the collector's address (192.168.77.1/30 is the host's end of the link)
VM1_MAC=52:54:00:00:00:01
VM2_MAC=52:54:00:00:00:02
SRC="G.V().Has('Name','vm1').Out().Has('Name','eth0')"
DST="G.V().Has('Name','vm2').Out().Has('Name','eth0')"
CAPTURED="G.V().Has('Name', 'vm1').Out().Has('Name', 'eth0')"

# ---- narrative and helpers ---------------------------------------------------------------------

section() { printf '\n== %s ==\n\n' "$*"; }
say() { printf '%s\n' "$*"; }
die() {
  printf '\nFAILED: %s\n' "$*" >&2
  exit 1
}

# Prints a command as one would type it: arguments with spaces or quotes in double quotes.
show() {
  local out="" a
  for a in "$@"; do
    if [ "$a" = "&" ]; then
      out+=" &"
    elif [[ $a =~ ^[][A-Za-z0-9_./:=@%+,-]+$ ]]; then
      out+=" $a"
    elif [[ $a != *[\"\$\`\\]* ]]; then
      out+=" \"$a\""
    else
      out+=" $(printf '%q' "$a")"
    fi
  done
  # Temporary paths as $WORK (printed once at the start).
  [ -n "${WORK:-}" ] && out=${out//$WORK/\$WORK}
  printf '$%s\n' "$out"
}

# Shows a command, then runs it.
run() {
  show "$@"
  "$@"
}

# Polls `cmd...` every 100 ms until it succeeds, for at most `seconds`.
wait_until() {
  local seconds=$1 what=$2
  shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
    sleep 0.1
  done
}

# ---- preconditions -----------------------------------------------------------------------------

[ "$(id -u)" = 0 ] || die "run this as root: it creates network namespaces and starts Open vSwitch"
for ns in vm1 vm2 "$HOST_NS" "$COLLECTOR_NS"; do
  if [ -e "/var/run/netns/$ns" ]; then
    die "network namespace '$ns' already exists. The walkthrough creates (and removes) its own vm1 and vm2, \
as in the blog post, so that its Gremlin queries match exactly its namespaces: remove the existing one \
('ip netns del $ns') or run the walkthrough on another machine."
  fi
done
needed=(ip ethtool ss ovsdb-tool ovsdb-server ovs-vswitchd ovs-vsctl ovs-appctl tshark tcpdump nfcapd nfdump socat)
for tool in "${needed[@]}"; do
  if ! command -v "$tool" >/dev/null; then
    say "Installing what is missing ($tool and friends) with scripts/deps.sh test"
    "$REPO/scripts/deps.sh" test
    break
  fi
done
for tool in "${needed[@]}"; do
  command -v "$tool" >/dev/null || die "$tool is still missing after scripts/deps.sh test"
done
command -v cargo >/dev/null || die "cargo is needed to build topotap (https://rustup.rs)"

# ---- cleanup, whatever happens -----------------------------------------------------------------

WORK=$(mktemp -d /tmp/topotap-walkthrough.XXXXXX)
OVS_DIR=$WORK/ovs
export OVS_RUNDIR=$OVS_DIR OVS_LOGDIR=$OVS_DIR OVS_DBDIR=$OVS_DIR OVS_SYSCONFDIR=$OVS_DIR
CREATED_NS=()
PIDS=() # background processes: receivers, topotap
TOPOTAP_PID=""

stop_pid() { # stop_pid SIGNAL PID: signal, wait up to 5 s, then SIGKILL
  local sig=$1 pid=$2 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill "-$sig" "$pid" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [ "$rc" != 0 ] && [ -s "$WORK/topotap.log" ]; then
    printf '\n-- last lines of the topotap log --\n' >&2
    tail -n 20 "$WORK/topotap.log" | sed "s/\x1b\[[0-9;]*m//g" >&2
  fi
  local pid
  for pid in "${PIDS[@]}"; do stop_pid TERM "$pid"; done
  if [ -e "$OVS_DIR/ovs-vswitchd.ctl" ]; then
    timeout 10 ovs-appctl -t "$OVS_DIR/ovs-vswitchd.ctl" exit --cleanup >/dev/null 2>&1
  fi
  if [ -e "$OVS_DIR/ovsdb-server.ctl" ]; then
    timeout 10 ovs-appctl -t "$OVS_DIR/ovsdb-server.ctl" exit >/dev/null 2>&1
  fi
  local f
  for f in ovs-vswitchd.pid ovsdb-server.pid; do
    # Only if that pid is still this walkthrough's daemon.
    pid=$(cat "$OVS_DIR/$f" 2>/dev/null)
    [ -n "$pid" ] && tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -qF "$OVS_DIR" &&
      stop_pid KILL "$pid"
  done
  local ns
  for ns in "${CREATED_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then
    say ""
    say "Cleaned up: namespaces ${CREATED_NS[*]}, Open vSwitch, topotap and \$WORK removed."
  else
    echo "Cleaned up after the failure (exit status $rc)." >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

add_ns() {
  ip netns add "$1"
  CREATED_NS+=("$1")
  # No IPv6 (router solicitations, MLD reports): the captures then see only the walkthrough's
  # traffic.
  ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

say "Temporary files (OVS database and logs, topotap state, what the collector received) go to"
say "WORK=$WORK"

# ---- build -------------------------------------------------------------------------------------

section "Building topotap ($PROFILE)"
build=(cargo build --locked --bin topotap)
[ "$PROFILE" = release ] && build+=(--release)
show "${build[@]}"
(cd "$REPO" && "${build[@]}" -q)
BIN=$REPO/target/$PROFILE/topotap
started=$SECONDS

# ---- the topology ------------------------------------------------------------------------------

section "The topology: two VMs on an Open vSwitch bridge, and a collector"
say "Namespace $HOST_NS plays the host: it runs Open vSwitch (userspace datapath) and topotap."
say "vm1 and vm2 are joined through the OVS bridge br0; the collector is reached over a veth."
say ""
say "   vm1 (eth0 10.0.0.1/24)                       vm2 (eth0 10.0.0.2/24)"
say "        |                                            |"
say "   vm1-eth0 --------------- br0 (OVS) --------------- vm2-eth0"
say "                            $HOST_NS"
say "                            to-collector 192.168.77.1/30"
say "                                 |"
say "                  $COLLECTOR_NS: eth0 $COLLECTOR/30  (tshark, tcpdump, nfcapd)"
say ""

add_ns "$HOST_NS"
ip -n "$HOST_NS" link set lo up
mkdir -p "$OVS_DIR"
run ovsdb-tool create "$OVS_DIR/conf.db" /usr/share/openvswitch/vswitch.ovsschema >/dev/null
run ip netns exec "$HOST_NS" ovsdb-server "$OVS_DIR/conf.db" --remote="punix:$OVS_DIR/db.sock" \
  --pidfile="$OVS_DIR/ovsdb-server.pid" --unixctl="$OVS_DIR/ovsdb-server.ctl" \
  --log-file="$OVS_DIR/ovsdb-server.log" -vconsole:off --detach 2>>"$OVS_DIR/start.err" ||
  die "ovsdb-server did not start: $(cat "$OVS_DIR/start.err")"
vsctl() { ovs-vsctl --db="unix:$OVS_DIR/db.sock" --timeout=20 "$@"; }
vsctl --no-wait init
run ip netns exec "$HOST_NS" ovs-vswitchd "unix:$OVS_DIR/db.sock" \
  --pidfile="$OVS_DIR/ovs-vswitchd.pid" --unixctl="$OVS_DIR/ovs-vswitchd.ctl" \
  --log-file="$OVS_DIR/ovs-vswitchd.log" -vconsole:off --detach 2>>"$OVS_DIR/start.err" ||
  die "ovs-vswitchd did not start: $(cat "$OVS_DIR/start.err")"
show ovs-vsctl add-br br0 -- set bridge br0 datapath_type=netdev
vsctl add-br br0 -- set bridge br0 datapath_type=netdev

vm_ip=(x 10.0.0.1 10.0.0.2)
vm_mac=(x "$VM1_MAC" "$VM2_MAC")
for i in 1 2; do
  vm=vm$i
  peer=$((3 - i))
  add_ns "$vm"
  run ip -n "$HOST_NS" link add "$vm-eth0" type veth peer name eth0 netns "$vm"
  ip -n "$HOST_NS" link set "$vm-eth0" up
  run ip -n "$vm" link set eth0 address "${vm_mac[$i]}" up
  run ip -n "$vm" addr add "${vm_ip[$i]}/24" dev eth0
  # Userspace OVS does not fill in checksums a veth leaves to offload.
  ip netns exec "$vm" ethtool -K eth0 tx off >/dev/null
  # Static neighbours: no ARP on the captured interface, only the walkthrough's ICMP.
  ip -n "$vm" neigh add "${vm_ip[$peer]}" lladdr "${vm_mac[$peer]}" dev eth0 nud permanent
  show ovs-vsctl add-port br0 "$vm-eth0"
  vsctl add-port br0 "$vm-eth0"
done

add_ns "$COLLECTOR_NS"
run ip -n "$HOST_NS" link add to-collector type veth peer name eth0 netns "$COLLECTOR_NS"
run ip -n "$HOST_NS" addr add 192.168.77.1/30 dev to-collector
ip -n "$HOST_NS" link set to-collector up
run ip -n "$COLLECTOR_NS" addr add "$COLLECTOR/30" dev eth0
ip -n "$COLLECTOR_NS" link set eth0 up
ip -n "$COLLECTOR_NS" link set lo up

say ""
say "vm1 pings vm2 through Open vSwitch:"
show ip netns exec vm1 ping -c 1 -W 2 10.0.0.2
out=$(ip netns exec vm1 ping -c 1 -W 2 10.0.0.2) || die "vm1 cannot ping vm2 through Open vSwitch:
$out"
printf '%s\n' "$out" | grep "bytes from"

# ---- topotap -----------------------------------------------------------------------------------

section "Starting topotap in the host namespace"
# A fresh namespace: 127.0.0.1:8082 is free there (and the client's default address).
TOPOTAP_ARGS=(allinone --listen 127.0.0.1:8082 --ovsdb "unix:$OVS_DIR/db.sock" --state-dir "$WORK/state")
show ip netns exec "$HOST_NS" topotap "${TOPOTAP_ARGS[@]}" "&"
ip netns exec "$HOST_NS" "$BIN" "${TOPOTAP_ARGS[@]}" >"$WORK/topotap.log" 2>&1 &
TOPOTAP_PID=$!
PIDS+=("$TOPOTAP_PID")

# `topotap client ...` below talks to that instance: it runs in the host namespace too.
topotap() { ip netns exec "$HOST_NS" "$BIN" "$@"; }
query() { topotap client topology query --gremlin "$1"; }
query_is() { [ "$(query "$1" | tr -d ' \n[]')" = "$2" ]; }

wait_until 30 "the topotap API" topotap client status
for vm in vm1 vm2; do
  wait_until 20 "$vm's eth0 in the graph, with its address" \
    query_is "G.V().Has('Name', '$vm').Out().Has('Name', 'eth0').Has('IPV4').Has('MAC').Count()" 1
done
wait_until 20 "the OVS ports in the graph" \
  query_is "G.V().Has('Type', 'ovsport', 'Name', WITHIN('vm1-eth0', 'vm2-eth0')).Count()" 2
say "topotap sees the namespaces and the bridge. The interface the captures will use:"
run topotap client -o table topology query --gremlin "$CAPTURED"

# ---- one section per target type ---------------------------------------------------------------

# capture_on TYPE TARGET [extra create options]: creates the capture, prints it, waits until active.
capture_on() {
  local type=$1 target=$2
  shift 2
  local out
  show topotap client capture create --gremlin "$CAPTURED" --target "$target" --target-type "$type" "$@"
  out=$(topotap client capture create --gremlin "$CAPTURED" --target "$target" --target-type "$type" "$@")
  CAPTURE=$(printf '%s\n' "$out" | sed -n 's/^  "UUID": "\([^"]*\)".*/\1/p')
  [ -n "$CAPTURE" ] || die "capture creation answered: $out"
  printf '%s\n' "$out"
  wait_until 20 "the capture to be active on vm1's eth0" \
    query_is "G.V().Has('Captures.ID', '$CAPTURE', 'Captures.State', 'active').Count()" 1
  say "(active on vm1's eth0)"
}

injection_done() { [[ $(topotap client injection get "$1") == *'"State": "done"'* ]]; }

# Injects 5 ICMP echo requests from vm1 to vm2 and waits until the capture has seen them and the
# 5 replies.
inject() {
  say ""
  local out id
  run_out=(topotap client injection create --src "$SRC" --dst "$DST" --type icmp4 --count 5 --interval 100)
  show "${run_out[@]}"
  out=$("${run_out[@]}")
  id=$(printf '%s\n' "$out" | sed -n 's/^  "UUID": "\([^"]*\)".*/\1/p')
  [ -n "$id" ] || die "injection creation answered: $out"
  wait_until 20 "the injection to finish" injection_done "$id"
  wait_until 20 "the capture to count the 5 requests and 5 replies" \
    query_is "G.V().Has('Captures.ID', '$CAPTURE', 'Captures.PacketsReceived', GTE(10)).Count()" 1
  say "(5 echo requests sent, 5 replies back)"
}

delete_capture() {
  say ""
  show topotap client capture delete "$CAPTURE"
  topotap client capture delete "$CAPTURE" >/dev/null
  wait_until 20 "the capture to stop" query_is "G.V().Has('Captures.ID', '$CAPTURE').Count()" 0
  sleep 0.3
}

# Starts a receiver in the collector namespace; its pid goes to RECEIVER.
receiver() {
  local log=$1
  shift
  show ip netns exec "$COLLECTOR_NS" "$@" "&"
  ip netns exec "$COLLECTOR_NS" "$@" >"$log" 2>&1 &
  RECEIVER=$!
  PIDS+=("$RECEIVER")
}

# tcpdump in the collector namespace writing FILE, once it listens.
tcpdump_to() {
  local file=$1 filter=$2
  receiver "$file.log" tcpdump -i eth0 -n --immediate-mode -U -w "$file" "$filter"
  wait_until 10 "tcpdump to listen" grep -q "listening on" "$file.log"
}

udp_listening() { [[ $(ip netns exec "$COLLECTOR_NS" ss -Hnlu) == *"$COLLECTOR:$1 "* ]]; }

# nfcapd in the collector namespace on PORT, writing into DIR, once it listens.
nfcapd_on() {
  local port=$1 dir=$2
  mkdir -p "$dir"
  receiver "$dir.log" nfcapd -b "$COLLECTOR" -p "$port" -w "$dir" -t 3600
  wait_until 10 "nfcapd to listen" udp_listening "$port"
}

tshark_q() { # tshark without its "Running as user root" warning
  local err=$WORK/tshark.err
  tshark "$@" 2>"$err" || {
    cat "$err" >&2
    return 1
  }
}

# Prints tab-separated lines as aligned columns.
columns() {
  awk -F'\t' '{ for (i = 1; i <= NF; i++) { c[NR, i] = $i; if (length($i) > w[i]) w[i] = length($i) } if (NF > n) n = NF }
    END { for (r = 1; r <= NR; r++) { s = ""; for (i = 1; i <= n; i++) s = s sprintf(i < n ? "%-" w[i] "s  " : "%s", c[r, i]); print s } }'
}

nfdump_show() { # the flows nfcapd stored, as nfdump prints them
  run nfdump -R "$1" -q -o "fmt:%pr %sa -> %da  type.code %dp  packets %pkt  bytes %byt  in %in out %out"
}

# Checks nfdump's records: exactly one ICMP flow each way, 5 packets and 420 bytes (5 x 84-byte IP
# packets: 56 bytes of payload, 8 of ICMP header, 20 of IPv4 header).
nfdump_check() {
  local dir=$1 what=$2 got want
  got=$(nfdump -R "$dir" -q -N -o "fmt:%pr|%sa|%da|%dp|%pkt|%byt" | tr -d ' ' | sort)
  want=$(printf '%s\n' "1|10.0.0.1|10.0.0.2|8.0|5|420" "1|10.0.0.2|10.0.0.1|0.0|5|420" | sort)
  [ "$got" = "$want" ] || die "$what: nfdump shows
$got
instead of one flow each way with 5 packets and 420 bytes:
$want"
  say "CHECK OK: $what: one ICMP flow each way, 5 packets and 420 bytes (5 x 84-byte IP packets) each."
}

# ---- ERSPAN ------------------------------------------------------------------------------------

section "1/4 ERSPAN Type II (erspanv1): every packet mirrored, GRE-encapsulated"
say "The collector captures GRE with tcpdump. The port of the target is 0: GRE has no ports."
dir=$WORK/erspan
mkdir -p "$dir"
tcpdump_to "$dir/erspan.pcap" "ip proto 47"
tcpdump_pid=$RECEIVER
capture_on erspanv1 "$COLLECTOR:0"
inject
delete_capture
stop_pid INT "$tcpdump_pid"

say ""
say "What the collector received (the mirrored ICMP frames):"
show tshark -r "$dir/erspan.pcap" -Y erspan
tshark_q -r "$dir/erspan.pcap" -Y erspan
say ""
fields=(-e frame.number -e ip.src -e ip.dst -e gre.sequence_number -e erspan.version -e erspan.spanid
  -e icmp.type -e icmp.seq)
show tshark -r "$dir/erspan.pcap" -Y erspan -T fields "${fields[@]}"
tshark_q -r "$dir/erspan.pcap" -Y erspan -T fields "${fields[@]}" >"$dir/fields.txt"
# ip.src and ip.dst come as "outer,inner": the GRE packet's, then the mirrored frame's.
awk -F'\t' 'BEGIN { OFS = "\t"; print "frame", "outer src", "outer dst", "GRE seq", "ERSPAN ver", "session", "inner src", "inner dst", "ICMP type", "ICMP seq" }
  { split($2, s, ","); split($3, d, ","); print $1, s[1], d[1], $4, $5, $6, s[2], d[2], $7, $8 }' "$dir/fields.txt" >"$dir/table.txt"
columns <"$dir/table.txt"
malformed=$(tshark_q -r "$dir/erspan.pcap" -Y _ws.malformed | wc -l)
[ "$malformed" = 0 ] || die "ERSPAN: $malformed malformed packets"
# 10 frames: request (type 8, vm1 -> vm2) then reply (type 0, vm2 -> vm1), GRE sequence 0..9.
expected=$(for s in 0 1 2 3 4 5 6 7 8 9; do
  if ((s % 2 == 0)); then
    printf '%s\t192.168.77.1\t192.168.77.2\t%s\t1\t10.0.0.1\t10.0.0.2\t8\t%s\n' "$((s + 1))" "$s" "$((s / 2 + 1))"
  else
    printf '%s\t192.168.77.1\t192.168.77.2\t%s\t1\t10.0.0.2\t10.0.0.1\t0\t%s\n' "$((s + 1))" "$s" "$((s / 2 + 1))"
  fi
done)
got=$(tail -n +2 "$dir/table.txt" | cut -f1-5,7-10)
[ "$got" = "$expected" ] || die "ERSPAN: expected 10 mirrored ICMP frames (5 requests, 5 replies) with GRE sequence 0..9 from 192.168.77.1, got:
$got"
sessions=$(tail -n +2 "$dir/table.txt" | cut -f6 | sort -u | wc -l)
[ "$sessions" = 1 ] || die "ERSPAN: one session id expected, got $sessions"
say ""
say "CHECK OK: ERSPAN: 10 mirrored ICMP frames (5 requests, 5 replies), GRE sequence 0..9, ERSPAN version 1 (Type II), one session."

# ---- NetFlow v5 --------------------------------------------------------------------------------

section "2/4 NetFlow v5: flow records to nfcapd"
say "Flows are exported when they end, time out, or the capture is deleted: here, the deletion."
dir=$WORK/netflow
nfcapd_on 2055 "$dir"
nfcapd_pid=$RECEIVER
capture_on netflowv5 "$COLLECTOR:2055"
inject
delete_capture
stop_pid TERM "$nfcapd_pid" # nfcapd writes its file out on SIGTERM
say ""
say "What the collector received:"
nfdump_show "$dir"
say ""
nfdump_check "$dir" "NetFlow v5"

# ---- sFlow -------------------------------------------------------------------------------------

section "3/4 sFlow v5: packet samples (1 out of 1) to the collector"
say "tcpdump records the sFlow datagrams; socat holds UDP port 6343 open so the collector's"
say "kernel does not answer them with ICMP port unreachable."
dir=$WORK/sflow
mkdir -p "$dir"
receiver "$dir/socat.log" socat -u "UDP4-RECV:6343,bind=$COLLECTOR" OPEN:/dev/null
wait_until 10 "socat to listen" udp_listening 6343
tcpdump_to "$dir/sflow.pcap" "udp port 6343"
tcpdump_pid=$RECEIVER
capture_on sflow "$COLLECTOR:6343" --sampling-rate 1
inject
delete_capture
stop_pid INT "$tcpdump_pid"
say ""
say "What the collector received (one line per sFlow datagram; sample type 1 = flow sample,"
say "2 = counters; the sampled frames' ICMP types: 8 = echo request, 0 = echo reply):"
fields=(-e sflow_245.sequence_number -e sflow_245.agent -e sflow_245.numsamples -e sflow_245.sampletype
  -e sflow.flow_sample.sampling_rate -e sflow_245.header.frame_length -e icmp.type)
show tshark -r "$dir/sflow.pcap" -Y sflow -T fields -E header=y "${fields[@]}"
tshark_q -r "$dir/sflow.pcap" -Y sflow -T fields -E header=y "${fields[@]}" |
  awk 'BEGIN { OFS = FS = "\t" } NR == 1 { $0 = "datagram\tagent\tsamples\tsample types\tsampling rates\tframe lengths\tICMP types" } 1' >"$dir/table.txt"
columns <"$dir/table.txt"
malformed=$(tshark_q -r "$dir/sflow.pcap" -Y _ws.malformed | wc -l)
[ "$malformed" = 0 ] || die "sFlow: $malformed malformed datagrams"
# Over all datagrams: the flow samples, their sampling rates, frame lengths and ICMP types.
list() { tail -n +2 "$dir/table.txt" | cut -f"$1" | tr ',' '\n' | sed '/^$/d'; }
flow_samples=$(list 4 | grep -cx 1 || true)
rates=$(list 5 | sort -u | tr '\n' ' ')
lengths=$(list 6 | sort -u | tr '\n' ' ')
requests=$(list 7 | grep -cx 8 || true)
replies=$(list 7 | grep -cx 0 || true)
[ "$flow_samples" = 10 ] && [ "$rates" = "1 " ] && [ "$lengths" = "98 " ] &&
  [ "$requests" = 5 ] && [ "$replies" = 5 ] ||
  die "sFlow: expected 10 flow samples at rate 1 of 98-byte ICMP frames (5 echo requests, 5 replies); got $flow_samples flow samples, rates '$rates', frame lengths '$lengths', $requests requests, $replies replies"
say ""
say "CHECK OK: sFlow: 10 flow samples at sampling rate 1: the 5 echo requests and 5 replies, 98-byte frames."

# ---- IPFIX -------------------------------------------------------------------------------------

section "4/4 IPFIX: flow records (with their templates) to nfcapd"
dir=$WORK/ipfix
nfcapd_on 4739 "$dir"
nfcapd_pid=$RECEIVER
capture_on ipfix "$COLLECTOR:4739"
inject
delete_capture
stop_pid TERM "$nfcapd_pid"
say ""
say "What the collector received:"
nfdump_show "$dir"
say ""
nfdump_check "$dir" "IPFIX"

section "Done"
say "All four targets delivered what went over vm1's eth0, checked by the collector's own tools."
say "Walkthrough time: $((SECONDS - started)) s (after the build)."
