# Shared by the peer scripts (sourced, not run). Each peer keeps its data,
# logs and pid file under $STATE/<peer>, a temp dir, and its downloaded or
# built programs under $CACHE/<peer> in the repo's ignored .cache.
# dms-bench reads $STATE/<peer>/server.pid to report the server's CPU and RSS
# (its -peers-dir flag has the same default as $STATE).

set -euo pipefail

PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$PEERS_DIR/../.." && pwd)"
STATE="${DMS_BENCH_PEERS_DIR:-${TMPDIR:-/tmp}/dms-bench-peers}"
CACHE="${DMS_BENCH_PEERS_CACHE:-$REPO/.cache/peers}"

log() { echo "$(basename "$0"): $*" >&2; }
die() { log "$*"; exit 1; }

source "$REPO/scripts/apt.sh" # apt_install

# wait_port waits until something accepts connections on 127.0.0.1:$1.
wait_port() {
	local port="$1" seconds="${2:-60}" i
	for ((i = 0; i < seconds * 10; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	return 1
}

# port_free fails when something already listens on 127.0.0.1:$1.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# running succeeds when the pid file $1 names a live process.
running() {
	[ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# stop_pid ends the process named in pid file $1: TERM, then KILL after
# ${2:-30} seconds; then it removes the peer's state dir $3.
stop_pid() {
	local pidfile="$1" seconds="${2:-30}" dir="$3" pid i
	if running "$pidfile"; then
		pid="$(cat "$pidfile")"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < seconds * 10; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid did not stop in ${seconds}s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$dir"
}
