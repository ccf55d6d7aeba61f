#!/usr/bin/env bash
# Installs the Debian packages topotap and its test suite need, skipping those present.
# Usage: scripts/deps.sh [run|test]   (run: what topotap needs; test: also the peers)
set -euo pipefail
mode=${1:-test}
pkgs=(libpcap-dev pkg-config iproute2 ethtool openvswitch-switch openvswitch-common)
# Fleet mode keeps shared state in etcd v3; the etcd-client crate's build runs protoc,
# which needs the well-known types (google/protobuf/*.proto) from libprotobuf-dev.
pkgs+=(protobuf-compiler libprotobuf-dev)
if [ "$mode" = test ]; then
  # The etcd tests start their own etcd on loopback; etcdctl helps to look inside.
  pkgs+=(etcd-server etcd-client)
  # The history tests start their own PostgreSQL (initdb, pg_ctl) in a temp dir.
  pkgs+=(postgresql-15)
fi
if [ "$mode" = test ]; then
  pkgs+=(iputils-ping socat bc tshark nfdump pmacct softflowd tcpreplay tcpdump chromium)
  # The package test: curl, systemd-analyze (systemd), strip (binutils); promtool
  # (prometheus) for the metrics tests.
  pkgs+=(curl systemd binutils prometheus)
  # tests/containers.rs: a runc container from a busybox-static rootfs, and a private
  # dockerd (docker.io; its own roots and socket, no iptables, no bridge).
  pkgs+=(runc busybox-static docker.io)
  # The TLS tests make their CA and certificates with the openssl command.
  pkgs+=(openssl)
  # The web UI login test makes its htpasswd file with `htpasswd -B` (apache2-utils);
  # tests/skydive_client.rs installs Skydive's Python client from PyPI into a venv,
  # scripts/pytools.sh schemathesis and openapi-spec-validator (tests/openapi.rs).
  pkgs+=(apache2-utils python3 python3-venv)
  # The browser tests need Node.js and npm; the machine image may bring its own.
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q -o DPkg::Lock::Timeout=300
  apt-get install -y -q -o DPkg::Lock::Timeout=300 --no-install-recommends "${missing[@]}"
fi
