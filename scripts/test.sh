#!/usr/bin/env bash
# Installs what is missing and runs the whole test suite: formatting, lints, unit and
# integration tests (real namespaces, veths, bridges and a private userspace Open
# vSwitch per test), and a build of the fuzz targets and benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --no-fail-fast
scripts/package-test.sh # the .deb: dpkg -i, systemd-analyze verify, the packaged binary answers, dpkg -r
examples/capture-targets-walkthrough.sh --debug
cargo build --manifest-path fuzz/Cargo.toml --bins # fuzz targets, uninstrumented (fuzz/README.md runs them)
(cd tests/ui && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund && TOPOTAP_BIN=$PWD/../../target/debug/topotap node --test)
