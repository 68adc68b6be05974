#!/usr/bin/env bash
# Property-based tests of the native REST API (`make api-fuzz`, part of
# `make test`): schemathesis, pinned with its dependencies in
# constraints.txt and installed into .cache/schemathesis, generates requests
# from the OpenAPI document that a real dmsd serves at /openapi.json and
# checks that no answer is a 5xx and every answer matches the document.
# run.py starts dmsd, seeds the path parameters with real queue and group
# names, and bounds the examples per operation (API_FUZZ_EXAMPLES, 100 by
# default: about a minute on two cores). Needs Python >= 3.10, Go, PyPI.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/scripts/schemathesis"
venv="$root/.cache/schemathesis"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip --disable-pip-version-check --quiet install -c "$here/constraints.txt" schemathesis
mkdir -p "$root/.cache/bin"
(cd "$root/services" && go build -o "$root/.cache/bin/dmsd" ./cmd/dmsd)
exec "$venv/bin/python" "$here/run.py" --dmsd "$root/.cache/bin/dmsd" --schemathesis "$venv/bin/schemathesis" "$@"
