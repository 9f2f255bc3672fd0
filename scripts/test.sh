#!/usr/bin/env bash
# Set up everything the test suite needs on a fresh Debian machine, then run
# ruff, mypy --strict and pytest. This is the command README.md gives and the one
# CI runs. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-system-deps.sh

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

# The real Keystone (identity for the OpenStack tests) lives in its own venv: its
# dependency set is large and must not shape talprov's.
if [ ! -x .venv-keystone/bin/keystone-manage ]; then
    "$PY" -m venv .venv-keystone
    .venv-keystone/bin/python -m pip install -q --disable-pip-version-check keystone
fi
export TALPROV_KEYSTONE_PYTHON="$PWD/.venv-keystone/bin/python"

# talprov with no extras, for tests/unit/test_core_only_install.py (which would
# build it too; here its pip output shows where it belongs).
bash scripts/core-venv.sh >/dev/null

# vcsim (the vSphere simulator) is built from Debian's govmomi sources once.
bash tests/emulators/vcsim/build.sh

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy --strict"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest "$@"
