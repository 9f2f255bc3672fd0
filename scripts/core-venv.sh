#!/usr/bin/env bash
# Build .venv-core: talprov with its core dependencies only (`pip install -e .`, no
# extras), where tests/unit/test_core_only_install.py runs every command to show
# that a missing extra is one line naming it, never a traceback. Rebuilt from
# scratch when pyproject.toml changes (a dependency moved between core and an
# extra must not linger); otherwise a second run costs nothing. Prints the venv's
# path. TALPROV_CORE_VENV overrides where it lives.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${TALPROV_CORE_VENV:-$PWD/.venv-core}
PY=${PYTHON:-python3}
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
stamp="$VENV/talprov-pyproject.sha256"

exec 9>"$VENV.lock"   # two test runs at once build it once
flock 9
if [ ! -x "$VENV/bin/talprov" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e . >&2
    echo "$want" >"$stamp"
fi
echo "$VENV"
