#!/usr/bin/env bash
# Runs every fuzz target of the repository (every Fuzz* function that
# `go test -list` reports in a package of any Go module) for FUZZTIME each,
# one after the other: `make fuzz` (long, FUZZTIME=2m by default) and
# `make fuzz-short` (a few seconds each). The seed corpora (testdata/fuzz and
# f.Add) also run in every plain `go test`. A failing input is written to the
# package's testdata/fuzz by Go and fails the run; commit it with the fix.
# The last progress line of each target (execs, new interesting inputs) is
# printed as a summary at the end.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fuzztime=${FUZZTIME:-2m}
modules=(gen services sdk/go loadtest)
summary=()
failed=0
for module in "${modules[@]}"; do
  [ -f "$root/$module/go.mod" ] || continue
  cd "$root/$module"
  # Packages whose tests declare fuzz targets, and the targets, read from
  # the sources: `go test -list` would link a test binary per package first,
  # which cost more than the fuzzing of `make fuzz-short`.
  mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u)
  for dir in "${dirs[@]}"; do
    pkg=$(go list "$dir")
    mapfile -t targets < <(grep -ho '^func Fuzz[A-Za-z0-9_]*([A-Za-z_]* \*testing\.F)' "$dir"/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/' | sort -u)
    for target in "${targets[@]}"; do
      echo "== $pkg $target (fuzztime $fuzztime)"
      log=$(mktemp)
      if go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$dir" 2>&1 | tee "$log"; then
        result=ok
      else
        result=FAILED
        failed=1
      fi
      summary+=("$result $pkg $target: $(grep '^fuzz: elapsed' "$log" | tail -1)")
      rm -f "$log"
    done
  done
done
printf '%s\n' "${summary[@]}"
exit "$failed"
