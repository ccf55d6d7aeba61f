#!/usr/bin/env bash
# The long fuzz and namespace-churn soak: tests/soak.rs with long sizes, on the debug
# binary under its 3 GB address-space cap (as the test suite runs it, shorter).
#
# usage: bench/soak.sh [REQUESTS] [CHURN_SECONDS] [SEED]
#   REQUESTS       fuzz requests (default 20000; the fuzz stops after 900 s regardless)
#   CHURN_SECONDS  how long namespaces churn (default 120)
#   SEED           the fuzz and churn seed (default the test's)
# env: SOAK_RELEASE=1 runs the release binary (the test built with --release);
#      SOAK_RSS_EVERY=N prints the fuzz server's resident set after every N requests;
#      CHURN_SECONDS 0 skips the churn.
# Prints each test's summary line: statuses, RSS after warm-up / at the end / peak,
# churn changes, capture placement delay. Needs root (namespaces, veths).
set -euo pipefail
cd "$(dirname "$0")/.."
export TOPOTAP_FUZZ_REQUESTS=${1:-20000}
export TOPOTAP_CHURN_SECONDS=${2:-120}
export TOPOTAP_FUZZ_SECONDS=${TOPOTAP_FUZZ_SECONDS:-900}
[ -n "${SOAK_RSS_EVERY:-}" ] && export TOPOTAP_FUZZ_RSS_EVERY=$SOAK_RSS_EVERY
profile=()
[ -n "${SOAK_RELEASE:-}" ] && profile=(--release)
only=()
[ "$TOPOTAP_CHURN_SECONDS" = 0 ] && only=(a_seeded_fuzz)
[ -n "${3:-}" ] && export TOPOTAP_FUZZ_SEED=$3
cargo test --locked -q "${profile[@]}" --test soak -- "${only[@]}" --nocapture --test-threads=1 2>&1 |
  grep -E '^(fuzz|churn|test |test result)'
