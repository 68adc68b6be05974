#!/usr/bin/env bash
# local-cluster.sh — a DMS cluster on one machine: one etcd (Debian's
# etcd-server, installed with apt-get when missing) and N dmsd nodes on
# 127.0.0.1, each with its own ports and data directory.
#
#	deploy/local-cluster.sh up [N]         # N nodes (3 by default), replication factor min(3, N)
#	deploy/local-cluster.sh status         # etcd and each node: pid, addresses, /healthz
#	deploy/local-cluster.sh kill NODE [SIG] # signal a node, KILL by default (STOP and CONT pause it)
#	deploy/local-cluster.sh restart NODE   # stop it (TERM) if running, start it on its data, wait until /readyz
#	deploy/local-cluster.sh upgrade [DMSD] # rolling upgrade: a new dmsd (this repository's by default), then each
#	                                       # node restarted in turn, the next only once the last is ready (caught up)
#	deploy/local-cluster.sh down           # stop everything and delete the cluster's data
#
# NODE is node1..nodeN. Node i listens on 127.0.0.1: public gRPC PORT_BASE+10i,
# HTTP (REST, /healthz, /metrics) PORT_BASE+10i+1, internal gRPC
# PORT_BASE+10i+2, Kafka PORT_BASE+10i+3, AMQP PORT_BASE+10i+4; with the default base 7100, node1
# has gRPC 7110, HTTP 7111, Kafka 7113 and AMQP 7114. Logs and data are under $DIR/nodeI; `up` builds dmsd from this
# repository into $DIR (DMSD=/path/to/dmsd uses that binary instead).
#
# Environment: LOCAL_CLUSTER_DIR (${TMPDIR:-/tmp}/dms-local-cluster),
# LOCAL_CLUSTER_PORT_BASE (7100), LOCAL_CLUSTER_ETCD_PORT (23790, its peer
# port is the next one; not etcd's default 2379, which a packaged etcd
# started by the install may hold), DMSD_FLAGS (more dmsd flags for every node,
# for example "-node.session-ttl 3s").
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$REPO/scripts/apt.sh" # apt_install

DIR="${LOCAL_CLUSTER_DIR:-${TMPDIR:-/tmp}/dms-local-cluster}"
PORT_BASE="${LOCAL_CLUSTER_PORT_BASE:-7100}"
ETCD_PORT="${LOCAL_CLUSTER_ETCD_PORT:-23790}"
ETCD_VERSION="3.4.23-4+b4" # Debian bookworm's

log() { echo "local-cluster: $*" >&2; }
die() { log "$*"; exit 1; }

# wait_port waits until something accepts connections on 127.0.0.1:$1.
wait_port() {
	local i
	for ((i = 0; i < ${2:-30} * 10; i++)); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# stop_pid sends TERM to the process of pid file $1 and waits up to $2
# seconds before it kills it.
stop_pid() {
	local pid i
	running "$1" || return 0
	pid="$(cat "$1")"
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < ${2:-30} * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	log "pid $pid did not stop in ${2:-30}s; killing it"
	kill -KILL "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

node_dir() {
	[[ "$1" =~ ^node[0-9]+$ ]] || die "a node is named node1, node2, ..., not '$1'"
	[ -f "$DIR/$1/args" ] || die "no node $1 in $DIR (up first)"
	echo "$DIR/$1"
}

http_port() { echo $((PORT_BASE + 10 * ${1#node} + 1)); }

start_etcd() {
	local etcd_dir="$DIR/etcd"
	running "$etcd_dir/pid" && return 0
	apt_install "etcd-server=$ETCD_VERSION"
	port_free "$ETCD_PORT" || die "127.0.0.1:$ETCD_PORT is taken (LOCAL_CLUSTER_ETCD_PORT picks another)"
	mkdir -p "$etcd_dir"
	local client="http://127.0.0.1:$ETCD_PORT" peer="http://127.0.0.1:$((ETCD_PORT + 1))"
	nohup etcd --name local --data-dir "$etcd_dir/data" \
		--listen-client-urls "$client" --advertise-client-urls "$client" \
		--listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" \
		--initial-cluster "local=$peer" >"$etcd_dir/log" 2>&1 </dev/null &
	echo $! >"$etcd_dir/pid"
	wait_port "$ETCD_PORT" 30 || { tail -20 "$etcd_dir/log" >&2; die "etcd did not start"; }
	log "etcd $(etcd --version | awk '/etcd Version/ {print $3}') on 127.0.0.1:$ETCD_PORT, pid $(cat "$etcd_dir/pid")"
}

# start_node runs dmsd with the arguments kept in the node's directory.
start_node() {
	local dir="$DIR/$1"
	running "$dir/pid" && return 0
	local args=()
	mapfile -t args <"$dir/args"
	nohup "$DIR/dmsd" "${args[@]}" >>"$dir/log" 2>&1 </dev/null &
	echo $! >"$dir/pid"
}

# wait_healthy waits until the node answers /healthz with 200.
wait_healthy() {
	local port i
	port="$(http_port "$1")"
	for ((i = 0; i < 600; i++)); do
		running "$DIR/$1/pid" || { tail -20 "$DIR/$1/log" >&2; die "$1 exited"; }
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] && return 0
		sleep 0.1
	done
	tail -20 "$DIR/$1/log" >&2
	die "$1 is not healthy after 60s"
}

# wait_ready waits until the node answers /readyz with 200: started, and in
# sync on every partition and shard it keeps a copy of.
wait_ready() {
	local port i
	port="$(http_port "$1")"
	for ((i = 0; i < 1200; i++)); do
		running "$DIR/$1/pid" || { tail -20 "$DIR/$1/log" >&2; die "$1 exited"; }
		[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")" = 200 ] && return 0
		sleep 0.1
	done
	curl -s "http://127.0.0.1:$port/readyz" >&2 || true
	die "$1 is not ready (caught up) after 120s"
}

up() {
	local n="${1:-3}" i name
	[[ "$n" =~ ^[1-9][0-9]*$ ]] || die "up takes a node count, not '$n'"
	command -v curl >/dev/null || apt_install curl
	mkdir -p "$DIR"
	if [ -n "${DMSD:-}" ]; then
		cp "$DMSD" "$DIR/dmsd"
	else
		log "building dmsd"
		(cd "$REPO/services" && go build -o "$DIR/dmsd" ./cmd/dmsd)
	fi
	start_etcd
	local rf=$((n < 3 ? n : 3))
	for ((i = 1; i <= n; i++)); do
		name="node$i"
		mkdir -p "$DIR/$name/data"
		if ! running "$DIR/$name/pid"; then
			local port=$((PORT_BASE + 10 * i))
			for p in $port $((port + 1)) $((port + 2)) $((port + 3)) $((port + 4)); do
				port_free "$p" || die "127.0.0.1:$p is taken (LOCAL_CLUSTER_PORT_BASE picks other ports)"
			done
			# One argument per line, so that restart runs the node as it was.
			# shellcheck disable=SC2086 # DMSD_FLAGS is a list of words
			printf '%s\n' -etcd.endpoints "127.0.0.1:$ETCD_PORT" -node.name "$name" -node.zone "zone$i" \
				-server.grpc-addr "127.0.0.1:$port" -server.http-addr "127.0.0.1:$((port + 1))" \
				-server.internal-grpc-addr "127.0.0.1:$((port + 2))" -kafka.addr "127.0.0.1:$((port + 3))" -amqp.addr "127.0.0.1:$((port + 4))" \
				-data-dir "$DIR/$name/data" \
				-storage.replication-factor "$rf" ${DMSD_FLAGS:-} >"$DIR/$name/args"
		fi
		start_node "$name"
	done
	# A node is healthy once the cluster's shards have owners, which needs
	# replication-factor nodes: start them all, then wait.
	for ((i = 1; i <= n; i++)); do wait_healthy "node$i"; done
	log "$n nodes up, replication factor $rf"
	status
}

status() {
	[ -d "$DIR" ] || { echo "no cluster in $DIR"; return 1; }
	if running "$DIR/etcd/pid"; then
		echo "etcd   running pid $(cat "$DIR/etcd/pid")  127.0.0.1:$ETCD_PORT"
	else
		echo "etcd   stopped"
	fi
	local dir name state health port
	for dir in "$DIR"/node*; do
		[ -f "$dir/args" ] || continue
		name="$(basename "$dir")" port=$((PORT_BASE + 10 * ${name#node}))
		if running "$dir/pid"; then
			state="running pid $(cat "$dir/pid")"
			[ "$(ps -o stat= -p "$(cat "$dir/pid")" | cut -c1)" = T ] && state="$state (stopped by a signal)"
			health="$(curl -s -m 2 "http://127.0.0.1:$((port + 1))/healthz" || true)"
			state="$state, healthz: ${health:-no answer}"
		else
			state="down"
		fi
		printf '%-6s grpc 127.0.0.1:%d  http 127.0.0.1:%d  internal 127.0.0.1:%d  kafka 127.0.0.1:%d  amqp 127.0.0.1:%d  %s\n' \
			"$name" "$port" $((port + 1)) $((port + 2)) $((port + 3)) $((port + 4)) "${state%$'\n'}"
	done
}

kill_node() {
	local dir sig="${2:-KILL}"
	dir="$(node_dir "$1")"
	running "$dir/pid" || die "$1 is not running"
	kill -s "$sig" "$(cat "$dir/pid")"
	log "sent SIG$sig to $1 (pid $(cat "$dir/pid"))"
}

restart_node() {
	local dir
	dir="$(node_dir "$1")"
	log "restarting $1"
	if running "$dir/pid"; then
		kill -CONT "$(cat "$dir/pid")" 2>/dev/null || true # a paused node cannot stop
		local began=$SECONDS
		stop_pid "$dir/pid" 60 # as the systemd unit's TimeoutStopSec and the chart's grace period
		log "$1 stopped in $((SECONDS - began))s"
	fi
	start_node "$1"
	wait_healthy "$1"
	wait_ready "$1"
	log "$1 restarted and ready, pid $(cat "$dir/pid")"
}

# upgrade puts a new dmsd in place (renamed over the old one: the running
# nodes keep theirs) and restarts the nodes one at a time; each restart
# waits until the node is caught up, so that no two nodes are ever out of
# sync at once and writes with 2 in-sync replicas required go on.
upgrade() {
	[ -f "$DIR/dmsd" ] || die "no cluster in $DIR (up first)"
	if [ -n "${1:-}" ]; then
		cp "$1" "$DIR/dmsd.new"
	else
		log "building dmsd"
		(cd "$REPO/services" && go build -o "$DIR/dmsd.new" ./cmd/dmsd)
	fi
	mv -f "$DIR/dmsd.new" "$DIR/dmsd"
	local dir name
	for dir in "$DIR"/node*; do
		[ -f "$dir/args" ] || continue
		name="$(basename "$dir")"
		running "$dir/pid" || die "$name is down: bring it back (restart $name) before an upgrade"
	done
	for dir in $(printf '%s\n' "$DIR"/node* | sort -V); do
		[ -f "$dir/args" ] || continue
		restart_node "$(basename "$dir")"
	done
	log "upgrade done"
}

down() {
	[ -d "$DIR" ] || return 0
	local dir
	for dir in "$DIR"/node*; do
		[ -f "$dir/pid" ] || continue
		running "$dir/pid" && kill -CONT "$(cat "$dir/pid")" 2>/dev/null || true
		stop_pid "$dir/pid" 30
	done
	stop_pid "$DIR/etcd/pid" 30
	rm -rf "$DIR"
	log "down; $DIR removed"
}

case "${1:-}" in
up) up "${2:-3}" ;;
status) status ;;
kill) [ $# -ge 2 ] || die "usage: $0 kill NODE [SIGNAL]"; kill_node "$2" "${3:-KILL}" ;;
restart) [ $# -eq 2 ] || die "usage: $0 restart NODE"; restart_node "$2" ;;
upgrade) upgrade "${2:-}" ;;
down) down ;;
*) echo "usage: $0 up [N] | status | kill NODE [SIGNAL] | restart NODE | upgrade [DMSD] | down" >&2; exit 2 ;;
esac
