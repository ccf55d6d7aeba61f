#!/usr/bin/env bash
# Builds target/debian/topotap_<version>_<arch>.deb with cargo-deb: the binary, the
# default /etc/topotap/topotap.toml, the systemd unit, manual pages and shell completions.
# Prints the path of the .deb on its last line.
# Usage: scripts/package.sh [--debug]
#   --debug packs the debug build (quick; what the test suite installs) instead of a
#   release build.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=release
if [ "${1:-}" = --debug ]; then profile=debug; fi

command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version '^3'

if [ "$profile" = release ]; then
  cargo build --release --locked --bin topotap
else
  cargo build --locked --bin topotap
fi
bin=target/$profile/topotap

# Generated assets: the manual pages and completion scripts come from the binary's own
# command-line definition.
assets=target/package-assets
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man --dir "$assets/man"
gzip -9n "$assets"/man/*.1
"$bin" completions bash > "$assets/completions/topotap.bash"
"$bin" completions zsh > "$assets/completions/_topotap"
"$bin" completions fish > "$assets/completions/topotap.fish"

# cargo-deb reads the binary from target/release; the debug build is staged there under
# a separate profile directory so that a release build is never overwritten.
if [ "$profile" = release ]; then
  cargo deb --no-build --locked --output target/debian/ >&2
else
  cargo deb --no-build --locked --profile dev --output target/debian/ >&2
fi
version=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="topotap"))')
arch=$(dpkg --print-architecture)
deb=target/debian/topotap_${version}-1_${arch}.deb
[ -f "$deb" ] || deb=target/debian/topotap_${version}_${arch}.deb
[ -f "$deb" ] || { echo "no .deb found in target/debian" >&2; exit 1; }
echo "$deb"
