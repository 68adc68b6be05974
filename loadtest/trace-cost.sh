#!/usr/bin/env bash
# trace-cost.sh — what recording for message traces costs on the send and
# consume path: dmsd with -telemetry.record-traces=true against =false, and
# against BASE (a commit without trace recording or the domain metrics;
# empty skips it), interleaved in one run: e2e, 1 KiB, fsync before the ack,
# NORMAL queue with 3 partitions, 4 producers x 100 per call, 4 consumers,
# DRIVERS (dms-grpc,dms-stream). ROUNDS (2) rounds; each run gets a fresh
# dmsd and data directory. Results in ${OUT:-/tmp/trace-cost}/round-mode.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/trace-cost}"
WORK="$(mktemp -d /tmp/trace-cost.XXXXXX)"
PID=""
cleanup() {
	if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
	if [ -d "$WORK/base-src" ]; then git -C "$REPO" worktree remove --force "$WORK/base-src" >/dev/null 2>&1 || true; fi
	rm -rf "$WORK"
}
trap cleanup EXIT
(cd "$REPO/services" && go build -o "$WORK/dmsd" ./cmd/dmsd)
(cd "$REPO/loadtest" && go build -o "$WORK/dms-bench" ./cmd/dms-bench)
modes="on off"
if [ -n "${BASE:-}" ]; then
	git -C "$REPO" worktree add --detach "$WORK/base-src" "$BASE" >/dev/null 2>&1
	(cd "$WORK/base-src/services" && go build -o "$WORK/dmsd-base" ./cmd/dmsd)
	modes="on off base"
fi
for round in $(seq 1 "${ROUNDS:-2}"); do
	# Each round starts with another mode, so that no mode always runs
	# first (or last) on a machine whose load drifts.
	read -ra all <<<"$modes"
	order=()
	for i in "${!all[@]}"; do order+=("${all[$(((i + round - 1) % ${#all[@]}))]}"); done
	for mode in "${order[@]}"; do
		bin="$WORK/dmsd"; flags=(-telemetry.record-traces=true)
		case "$mode" in
		off) flags=(-telemetry.record-traces=false) ;;
		base) bin="$WORK/dmsd-base"; flags=() ;;
		esac
		rm -rf "$WORK/data"
		"$bin" -node.data-dir "$WORK/data" -server.grpc-addr 127.0.0.1:7190 -server.http-addr 127.0.0.1:7191 \
			-kafka.addr "" -amqp.addr "" -log.level warn "${flags[@]}" >"$WORK/dmsd.log" 2>&1 &
		PID=$!
		for _ in $(seq 1 100); do curl -sf http://127.0.0.1:7191/healthz >/dev/null 2>&1 && break; sleep 0.2; done
		echo "== round $round, $mode"
		"$WORK/dms-bench" -drivers "${DRIVERS:-dms-grpc,dms-stream}" -dms-grpc 127.0.0.1:7190 -dms-pid "$PID" \
			-workload e2e -duration "${DURATION:-15s}" -warmup 3s -producers 4 -consumers 4 -partitions 3 -batch 100 \
			-out "$OUT/$round-$mode" 2>/dev/null | tail -4
		kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
	done
done
