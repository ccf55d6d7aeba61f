#!/usr/bin/env bash
# Builds the .deb (debug build), installs it with dpkg as on a fresh machine, checks what
# it holds (unit verified by systemd-analyze, no maintainer script that could start
# anything), runs the packaged `topotap allinone --config /etc/topotap/topotap.toml` on a
# loopback port, checks that /api answers, then removes the package.
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
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
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

dpkg -r topotap
[ ! -e /usr/bin/topotap ] || fail "/usr/bin/topotap left after dpkg -r"
dpkg --purge topotap
[ ! -e /etc/topotap/topotap.toml ] || fail "/etc/topotap/topotap.toml left after purge"
echo "package-test: ok ($deb installed, ran, answered /api, removed)"
