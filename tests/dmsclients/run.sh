#!/usr/bin/env bash
# The clients DMS users have, against a real dmsd with authentication on
# (make dms-clients-test, part of make test): installs the Huawei Cloud
# Python SDK core and keystoneauth1, pinned in python/requirements.txt, into
# .cache/dmsclients/python, then vets and runs the Go tests of this module,
# which start dmsd and run python/clients.py. Needs Go and Python >= 3.10.
# Extra arguments go to go test (e.g. -run Keystone -v).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
venv="$root/.cache/dmsclients/python"

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip --disable-pip-version-check --quiet install -r "$here/python/requirements.txt"

cd "$here"
go vet ./...
export DMS_CLIENTS_PYTHON="$venv/bin/python"
exec go test -count=1 -timeout 10m ./... "$@"
