#!/usr/bin/env bash
# replication-compare.sh — RF 1 against RF 3 on a local three-node cluster
# (deploy/local-cluster.sh), interleaved in one run: 1 KiB, fsync on every
# replica before the ack, NORMAL queue with 3 partitions, 4 producers x 100
# per call, 4 consumers. ROUNDS (2) rounds of each; results in
# ${OUT:-/tmp/replication-compare}/round-rf.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/replication-compare}"
export LOCAL_CLUSTER_DIR="${LOCAL_CLUSTER_DIR:-/tmp/dms-replication-compare}"
"$REPO/deploy/local-cluster.sh" down >/dev/null 2>&1 || true
trap '"$REPO/deploy/local-cluster.sh" down' EXIT
"$REPO/deploy/local-cluster.sh" up 3
(cd "$REPO/loadtest" && go build -o "$LOCAL_CLUSTER_DIR/dms-bench" ./cmd/dms-bench)
for round in $(seq 1 "${ROUNDS:-2}"); do
	for rf in 1 3; do
		echo "== round $round, replication factor $rf"
		"$LOCAL_CLUSTER_DIR/dms-bench" -drivers dms-grpc -dms-grpc 127.0.0.1:7110 -dms-replication "$rf" \
			-workload e2e -duration 15s -warmup 3s -producers 4 -consumers 4 -partitions 3 -batch 100 \
			-out "$OUT/$round-$rf" 2>/dev/null | tail -4
	done
done
