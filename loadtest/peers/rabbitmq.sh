#!/usr/bin/env bash
# rabbitmq.sh start|stop|status — a single RabbitMQ node on 127.0.0.1 for
# dms-bench, from Debian's rabbitmq-server (pinned below), data in a temp dir.
#
# Durability as benchmarked: dms-bench declares durable queues, publishes
# persistent messages (delivery mode 2) and waits for publisher confirms.
# A quorum queue confirms after its Raft log is fsynced; a classic durable
# queue confirms persistent messages after they are written and fsynced (the
# server batches those fsyncs). RabbitMQ has no "confirm before fsync" mode for
# persistent messages, so dms-bench's -durability async runs it the same way.
#
# Environment: RABBITMQ_PORT (5672), RABBITMQ_EPMD_PORT (14369: a private epmd
# that stop ends), DMS_BENCH_PEERS_DIR (state root, default /tmp/dms-bench-peers).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION="3.10.8-1.1+deb12u1"
PORT="${RABBITMQ_PORT:-5672}"
EPMD_PORT="${RABBITMQ_EPMD_PORT:-14369}"
DIR="$STATE/rabbitmq"
PIDFILE="$DIR/server.pid"

rabbit_env() {
	export HOME="$DIR" # the Erlang cookie lives here
	export RABBITMQ_NODENAME="dmsbench@localhost"
	export RABBITMQ_CONFIG_FILE="$DIR/rabbitmq.conf"
	export RABBITMQ_ENABLED_PLUGINS_FILE="$DIR/enabled_plugins"
	export RABBITMQ_MNESIA_BASE="$DIR/mnesia"
	export RABBITMQ_LOG_BASE="$DIR/log"
	export RABBITMQ_PID_FILE="$PIDFILE"
	export RABBITMQ_DIST_PORT="$((PORT + 20000))"
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
	export ERL_EPMD_ADDRESS="127.0.0.1"
	export ERL_EPMD_PORT="$EPMD_PORT"
}

start() {
	if running "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
	port_free "$PORT" || die "127.0.0.1:$PORT is taken"
	apt_install "rabbitmq-server=$VERSION"
	rm -rf "$DIR" && mkdir -p "$DIR/log"
	cat >"$DIR/rabbitmq.conf" <<CONF
listeners.tcp.1 = 127.0.0.1:$PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
CONF
	echo '[].' >"$DIR/enabled_plugins"
	rabbit_env
	log "starting RabbitMQ $VERSION on 127.0.0.1:$PORT, data in $DIR"
	nohup /usr/lib/rabbitmq/bin/rabbitmq-server >"$DIR/stdout.log" 2>&1 </dev/null &
	if ! /usr/lib/rabbitmq/bin/rabbitmqctl -q wait "$PIDFILE" --timeout 120 >/dev/null; then
		tail -20 "$DIR/stdout.log" >&2
		die "RabbitMQ did not start"
	fi
	wait_port "$PORT" 30 || die "RabbitMQ does not listen on $PORT"
	log "running, pid $(cat "$PIDFILE")"
}

stop() {
	rabbit_env
	if running "$PIDFILE"; then
		/usr/lib/rabbitmq/bin/rabbitmqctl -q stop "$PIDFILE" >/dev/null 2>&1 || true
	fi
	stop_pid "$PIDFILE" 30 "$DIR"
	# The private epmd was started by this node's start; end it too.
	epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
	log "stopped"
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) if running "$PIDFILE"; then echo "running pid $(cat "$PIDFILE")"; else echo "stopped"; exit 1; fi ;;
*) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
