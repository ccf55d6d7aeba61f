#!/usr/bin/env bash
# Builds the .deb (debug build), installs it with dpkg as on a fresh machine, checks what
# it holds (units verified by systemd-analyze, no maintainer script that could start
# anything), runs the packaged `topotap allinone --config /etc/topotap/topotap.toml` on a
# loopback port and checks that /api answers, runs the packaged analyzer (with a real
# etcd) and agent with their packaged configurations, then removes the package.
# Run by scripts/test.sh; needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

if dpkg-query -W -f='${Status}' topotap 2>/dev/null | grep -q "install ok installed"; then
  echo "package-test: a topotap package is already installed; not touching it" >&2
  exit 1
fi

deb=$(scripts/package.sh --debug | tail -n 1)
echo "package-test: $deb"

work=$(mktemp -d)
server=
agent_pid= analyzer_pid= etcd_pid=
cleanup() {
  for p in "$server" "$agent_pid" "$analyzer_pid" "$etcd_pid"; do
    if [ -n "$p" ]; then kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; fi
  done
  dpkg --purge topotap >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "package-test: FAIL: $*" >&2; exit 1; }

# Installing starts nothing: the package has no maintainer scripts at all.
dpkg-deb --control "$deb" "$work/control"
for s in preinst postinst prerm postrm; do
  [ ! -e "$work/control/$s" ] || fail "the package has a $s script"
done

dpkg -i "$deb"

for f in /usr/bin/topotap /etc/topotap/topotap.toml /lib/systemd/system/topotap-allinone.service \
         /etc/topotap/agent.toml /etc/topotap/analyzer.toml \
         /lib/systemd/system/topotap-agent.service /lib/systemd/system/topotap-analyzer.service \
         /usr/share/man/man1/topotap-agent.1.gz /usr/share/man/man1/topotap-analyzer.1.gz \
         /usr/share/man/man1/topotap.1.gz /usr/share/man/man1/topotap-allinone.1.gz \
         /usr/share/bash-completion/completions/topotap /usr/share/zsh/vendor-completions/_topotap \
         /usr/share/fish/vendor_completions.d/topotap.fish; do
  [ -e "$f" ] || fail "$f is not installed"
done
grep -qx /etc/topotap/topotap.toml /var/lib/dpkg/info/topotap.conffiles || fail "the config file is not a conffile"
zcat /usr/share/man/man1/topotap-allinone.1.gz | grep -q 'config' || fail "man page without --config"

# The unit, checked offline (no running systemd is needed).
verify=$(systemd-analyze verify /lib/systemd/system/topotap-allinone.service 2>&1) ||
  fail "systemd-analyze verify: $verify"
if grep -i 'topotap' <<<"$verify"; then fail "systemd-analyze verify: $verify"; fi
unit=/lib/systemd/system/topotap-allinone.service
grep -qx 'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN' $unit || fail "capabilities"
grep -qx 'ProtectSystem=strict' $unit || fail "ProtectSystem"
grep -qx 'StateDirectory=topotap' $unit || fail "StateDirectory"
grep -qx 'Restart=on-failure' $unit || fail "Restart"

/usr/bin/topotap --version | grep -q '^topotap [0-9.]* (' || fail "--version: $(/usr/bin/topotap --version)"
/usr/bin/topotap config print --config /etc/topotap/topotap.toml > "$work/effective.toml"
grep -q '^listen = "127.0.0.1:8082"  # /etc/topotap/topotap.toml' "$work/effective.toml" ||
  fail "config print: $(cat "$work/effective.toml")"

# The packaged binary with the packaged configuration; a free loopback port and a
# scratch state directory instead of the service's.
/usr/bin/topotap allinone --config /etc/topotap/topotap.toml --no-probes \
  --listen 127.0.0.1:0 --state-dir "$work/state" > "$work/stdout" 2> "$work/stderr" &
server=$!
addr=
for _ in $(seq 100); do
  addr=$(sed -n 's|^listening on http://||p' "$work/stdout")
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || fail "topotap exited: $(cat "$work/stderr")"
  sleep 0.1
done
[ -n "$addr" ] || fail "topotap did not listen: $(cat "$work/stderr")"
body=$(curl -fsS --max-time 5 "http://$addr/api") || fail "GET /api failed"
grep -q '"Version"' <<<"$body" || fail "GET /api: $body"
kill "$server"; wait "$server" 2>/dev/null || true; server=

# The agent and analyzer units and configurations: verified offline, then the packaged
# analyzer (with a real etcd on loopback) and the packaged agent, each with its packaged
# configuration, and the agent's host shows up on the analyzer.
for u in agent analyzer; do
  unit=/lib/systemd/system/topotap-$u.service
  verify=$(systemd-analyze verify "$unit" 2>&1) || fail "systemd-analyze verify $u: $verify"
  if grep -i 'topotap' <<<"$verify"; then fail "systemd-analyze verify $u: $verify"; fi
  grep -qx "ExecStart=/usr/bin/topotap $u --config /etc/topotap/$u.toml" "$unit" || fail "$u ExecStart"
  grep -qx "StateDirectory=topotap-$u" "$unit" || fail "$u StateDirectory"
  grep -qx 'ProtectSystem=strict' "$unit" || fail "$u ProtectSystem"
  grep -qx 'Restart=on-failure' "$unit" || fail "$u Restart"
  grep -qx "/etc/topotap/$u.toml" /var/lib/dpkg/info/topotap.conffiles || fail "$u.toml is not a conffile"
done
grep -qx 'CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYS_ADMIN' \
  /lib/systemd/system/topotap-agent.service || fail "agent capabilities"
grep -qx 'CapabilityBoundingSet=' /lib/systemd/system/topotap-analyzer.service ||
  fail "the analyzer holds capabilities"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
etcd_client=$(free_port); etcd_peer=$(free_port)
etcd --name pkgtest --data-dir "$work/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_client" --advertise-client-urls "http://127.0.0.1:$etcd_client" \
  --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
  --initial-cluster "pkgtest=http://127.0.0.1:$etcd_peer" > "$work/etcd.log" 2>&1 &
etcd_pid=$!
wait_listening() { # pid stdout stderr -> prints the address
  local a=
  for _ in $(seq 150); do
    a=$(sed -n 's|^listening on http://||p' "$2")
    [ -n "$a" ] && { echo "$a"; return; }
    kill -0 "$1" 2>/dev/null || fail "exited: $(cat "$3")"
    sleep 0.1
  done
  fail "did not listen: $(cat "$3")"
}
/usr/bin/topotap analyzer --config /etc/topotap/analyzer.toml --listen 127.0.0.1:0 \
  --state-dir "$work/analyzer" --etcd "http://127.0.0.1:$etcd_client" \
  > "$work/analyzer.out" 2> "$work/analyzer.err" &
analyzer_pid=$!
aaddr=$(wait_listening $analyzer_pid "$work/analyzer.out" "$work/analyzer.err")
/usr/bin/topotap agent --config /etc/topotap/agent.toml --no-probes --listen 127.0.0.1:0 \
  --state-dir "$work/agent" --host-id pkgtest-agent --analyzer "$aaddr" \
  > "$work/agent.out" 2> "$work/agent.err" &
agent_pid=$!
wait_listening $agent_pid "$work/agent.out" "$work/agent.err" > /dev/null
seen=
for _ in $(seq 100); do
  status=$(curl -fsS --max-time 5 "http://$aaddr/api/status") || true
  grep -q 'pkgtest-agent' <<<"$status" && { seen=1; break; }
  sleep 0.1
done
[ -n "$seen" ] || fail "the packaged agent never reached the packaged analyzer: $status $(cat "$work/agent.err")"
kill $agent_pid $analyzer_pid $etcd_pid; wait $agent_pid $analyzer_pid $etcd_pid 2>/dev/null || true
agent_pid= analyzer_pid= etcd_pid=

dpkg -r topotap
[ ! -e /usr/bin/topotap ] || fail "/usr/bin/topotap left after dpkg -r"
dpkg --purge topotap
[ ! -e /etc/topotap/topotap.toml ] || fail "/etc/topotap/topotap.toml left after purge"
echo "package-test: ok ($deb installed, ran, answered /api, removed)"
