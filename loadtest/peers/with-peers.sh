#!/usr/bin/env bash
# with-peers.sh [sync|async] -- COMMAND... — start every peer (NATS
# JetStream, RabbitMQ, Kafka) on 127.0.0.1 in the given durability mode
# (default sync), run COMMAND, and stop the peers again whatever happens.
# A peer that cannot be started is reported and left out: dms-bench then
# lists its drivers as skipped, with the reason. PEERS names the peers to
# start (default: nats rabbitmq kafka), so that idle peers do not share the
# machine with a run that does not use them.
#
#   loadtest/peers/with-peers.sh -- go run ./cmd/dms-bench -suite short -drivers all
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

mode=sync
if [ "${1:-}" = sync ] || [ "${1:-}" = async ]; then mode="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || { echo "usage: $0 [sync|async] -- COMMAND..." >&2; exit 2; }

started=()
stop_all() {
	local p
	for p in "${started[@]}"; do "$here/$p.sh" stop || true; done
}
trap stop_all EXIT
trap 'exit 130' INT TERM

for p in ${PEERS:-nats rabbitmq kafka}; do
	case "$p" in nats|rabbitmq|kafka) ;; *) echo "with-peers.sh: unknown peer $p in PEERS" >&2; exit 2 ;; esac
	if [ "$p" = rabbitmq ]; then args=(start); else args=(start "$mode"); fi
	if "$here/$p.sh" "${args[@]}"; then
		started+=("$p")
	else
		echo "with-peers.sh: $p did not start; its drivers will be skipped" >&2
		"$here/$p.sh" stop >/dev/null 2>&1 || true
	fi
done
"$@"
