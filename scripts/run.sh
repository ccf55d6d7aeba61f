#!/usr/bin/env bash
# Installs what is missing, builds topotap and runs it (API on 127.0.0.1:8082 unless
# --listen or TOPOTAP_LISTEN say otherwise). Extra arguments go to `topotap allinone`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh run
cargo build --release --locked --bin topotap
exec target/release/topotap allinone "$@"
