#!/usr/bin/env bash
# Builds the Java SDK (generating the dms.v1 stubs from proto/ with the pinned protoc and
# grpc-java plugin) and runs its tests against a real dmsd, which the tests build from
# services/ (or take from $DMS_TEST_DMSD). This is what CI calls; extra arguments go to Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v mvn >/dev/null || { echo "sdk/java: mvn (Maven 3.8+) is required" >&2; exit 1; }
command -v go >/dev/null || [[ -n "${DMS_TEST_DMSD:-}" ]] || {
  echo "sdk/java: go is required to build dmsd for the tests (or set DMS_TEST_DMSD)" >&2; exit 1; }
# Not -q: Surefire's summary ("Tests run: N, Failures: ...") is an INFO line.
exec mvn -B -ntp verify "$@"
