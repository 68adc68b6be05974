#!/usr/bin/env bash
# Refreshes the vendored protoc-gen-openapiv2 options (the field and schema
# annotations that put ranges and patterns into the OpenAPI document) in
# third_party/googleapis (beside the googleapis protos) from the grpc-gateway Go module of the version
# pinned in tools/go.mod (the buf registry is not reachable from our
# machines). Run by hand when bumping grpc-gateway.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
version=$(cd "$root/tools" && go list -m -f '{{.Version}}' github.com/grpc-ecosystem/grpc-gateway/v2)
dir=$(cd "$root/tools" && go mod download -json "github.com/grpc-ecosystem/grpc-gateway/v2@$version" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
for f in protoc-gen-openapiv2/options/annotations.proto protoc-gen-openapiv2/options/openapiv2.proto; do
  install -D -m 0644 "$dir/$f" "$root/third_party/googleapis/$f"
done
echo "github.com/grpc-ecosystem/grpc-gateway/v2@$version" > "$root/third_party/googleapis/VERSION-openapiv2"
