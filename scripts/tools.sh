#!/usr/bin/env bash
# Builds the pinned code-generation tools (buf and the protoc plugins, versions
# in tools/go.mod and tools/buf/go.mod) into .cache/bin and prints that
# directory. Everything comes from the Go module proxy; repeated runs reuse
# Go's build cache.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/.cache/bin"
mkdir -p "$bin"
export GOWORK=off GOFLAGS=-mod=mod
(cd "$root/tools" && go build -o "$bin/" tool)
(cd "$root/tools/buf" && go build -o "$bin/" tool)
echo "$bin"
