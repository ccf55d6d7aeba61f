#!/usr/bin/env bash
# Installs the Python API-testing tools (schemathesis, openapi-spec-validator) from PyPI
# into a virtual environment cached under the Cargo target directory, and prints its path.
# Reinstalls when the pinned versions change. Needs python3-venv (scripts/deps.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
venv=$target/pytools
# Hypothesis at the oldest release schemathesis takes: later ones describe strategies by
# parsing their source, which trips a CPython 3.11 bug on Debian 12 ("SystemError: AST
# constructor recursion depth mismatch") in schemathesis's coverage phase.
want="schemathesis==4.32.5 hypothesis==6.130.12 openapi-spec-validator==0.9.0"
mkdir -p "$target"
exec 9>"$target/pytools.lock"
flock 9
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
  rm -rf "$venv"
  # Debian's interpreter (python3-venv), whatever else is first on the PATH.
  /usr/bin/python3 -m venv "$venv" >&2
  # shellcheck disable=SC2086
  "$venv/bin/pip" install --quiet --disable-pip-version-check $want >&2
  echo "$want" >"$venv/.installed"
fi
echo "$venv"
