#!/usr/bin/env bash
# Tests the Python SDK as CI does: creates sdk/python/.venv, installs the
# pinned dependencies (constraints.txt) and the package itself with a real,
# non-editable build (so the build-time code generation from proto/ runs),
# then runs pytest against a dmsd built from this repository (tests/conftest.py;
# DMS_TEST_DMSD names a prebuilt binary instead). Needs Python >= 3.10, pip,
# Go, and PyPI. Extra arguments go to pytest.
set -euo pipefail
sdk=$(cd "$(dirname "$0")/.." && pwd)
venv=${VENV:-"$sdk/.venv"}
python=${PYTHON:-python3}

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check --quiet)
"${pip[@]}" install -c "$sdk/constraints.txt" "$sdk[test]"
# pip may keep an installed build of the same version: always rebuild ours.
"${pip[@]}" install --no-deps --force-reinstall "$sdk"

cd "$sdk"
rc=0
"$venv/bin/python" -m pytest "$@" || rc=$?
if [ "$rc" -eq 5 ]; then
  echo "sdk/python: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
