#!/usr/bin/env bash
# Refreshes the vendored googleapis protos in third_party/googleapis from the
# pinned PyPI package googleapis-common-protos (the buf registry is not
# reachable from our machines). Run by hand when bumping the version.
set -euo pipefail
version=1.70.0
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps -d "$tmp" "googleapis-common-protos==$version"
(cd "$tmp" && python3 -m zipfile -e ./*.whl x)
for f in google/api/annotations.proto google/api/http.proto google/api/field_behavior.proto; do
  install -D -m 0644 "$tmp/x/$f" "$root/third_party/googleapis/$f"
done
echo "googleapis-common-protos==$version" > "$root/third_party/googleapis/VERSION"
