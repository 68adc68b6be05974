#!/usr/bin/env bash
# nats.sh start [sync|async] | stop | status — a NATS JetStream server on
# 127.0.0.1 for dms-bench, data in a temp dir.
#
# Durability: "sync" (the default) sets `sync_interval: always`, so JetStream
# fsyncs every stored message before it acknowledges the publish; "async" keeps
# the server default (fsync every 2 minutes). The mode is written to
# $STATE/nats/durability, where dms-bench checks it against -durability.
#
# Why not Debian's nats-server: bookworm ships 2.9.10, which rejects
# `sync_interval` (unknown field; the option came with 2.10), so it cannot be
# run fsync-before-ack. The script builds the pinned release below from its Go
# module with `go install` instead (about a minute, once; cached in
# .cache/peers/nats). NATS_SERVER=/path/to/nats-server overrides it.
#
# Environment: NATS_PORT (4222), DMS_BENCH_PEERS_DIR (state root).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION="v2.14.9"
PORT="${NATS_PORT:-4222}"
DIR="$STATE/nats"
PIDFILE="$DIR/server.pid"

server_binary() {
	if [ -n "${NATS_SERVER:-}" ]; then echo "$NATS_SERVER"; return; fi
	local bin="$CACHE/nats/$VERSION/nats-server"
	if [ ! -x "$bin" ]; then
		log "building nats-server $VERSION with go install (once)"
		mkdir -p "$(dirname "$bin")"
		(cd "$CACHE" && GOWORK=off GOFLAGS= GOBIN="$(dirname "$bin")" \
			go install "github.com/nats-io/nats-server/v2@$VERSION") >&2
	fi
	echo "$bin"
}

start() {
	local mode="${1:-sync}" sync_line
	case "$mode" in
	sync) sync_line="sync_interval: always" ;;
	async) sync_line="" ;;
	*) die "durability is sync or async, not $mode" ;;
	esac
	if running "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
	port_free "$PORT" || die "127.0.0.1:$PORT is taken"
	local bin
	bin="$(server_binary)"
	rm -rf "$DIR" && mkdir -p "$DIR/jetstream"
	cat >"$DIR/nats.conf" <<CONF
listen: 127.0.0.1:$PORT
pid_file: "$PIDFILE"
max_payload: 8MB
jetstream {
  store_dir: "$DIR/jetstream"
  $sync_line
}
CONF
	echo "$mode" >"$DIR/durability"
	log "starting nats-server $("$bin" --version | awk '{print $2}') on 127.0.0.1:$PORT ($mode), data in $DIR"
	nohup "$bin" -c "$DIR/nats.conf" >"$DIR/server.log" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	if ! wait_port "$PORT" 30; then
		tail -20 "$DIR/server.log" >&2
		die "nats-server did not start"
	fi
	log "running, pid $(cat "$PIDFILE")"
}

stop() {
	stop_pid "$PIDFILE" 30 "$DIR"
	log "stopped"
}

case "${1:-}" in
start) start "${2:-sync}" ;;
stop) stop ;;
status) if running "$PIDFILE"; then echo "running pid $(cat "$PIDFILE") ($(cat "$DIR/durability"))"; else echo "stopped"; exit 1; fi ;;
*) echo "usage: $0 start [sync|async] | stop | status" >&2; exit 2 ;;
esac
