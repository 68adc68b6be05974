#!/usr/bin/env bash
# kafka.sh start [sync|async] | stop | status — a single-node Apache Kafka
# broker in KRaft mode (broker and controller in one JVM) on 127.0.0.1 for
# dms-bench, data in a temp dir.
#
# The broker comes from its jars on Maven Central (kafka/pom.xml pins the
# version; `mvn dependency:copy-dependencies` fetches kafka_2.13 and its
# runtime dependencies into .cache/peers/kafka/<version>/libs). The release's
# bin/ scripts are not on Maven Central, so the script runs the classes they
# run: kafka.tools.StorageTool to format the log dir, kafka.Kafka to serve.
# Needs Java 17 and Maven (Debian's openjdk-17-jre-headless and maven).
#
# Durability: "sync" (the default) sets log.flush.interval.messages=1, so the
# broker fsyncs every appended batch before it answers an acks=all produce
# (dms-bench also sets the topic's flush.messages to match its -durability);
# "async" leaves flushing to the OS. The mode is written to
# $STATE/kafka/durability, where dms-bench checks it against -durability.
#
# Environment: KAFKA_PORT (9092; the controller listens on KAFKA_PORT+10000),
# KAFKA_HEAP (1g), DMS_BENCH_PEERS_DIR (state root).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$PEERS_DIR/kafka/pom.xml")"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="$((PORT + 10000))"
DIR="$STATE/kafka"
PIDFILE="$DIR/server.pid"
LIBS="$CACHE/kafka/$VERSION/libs"

fetch_jars() {
	[ -f "$LIBS/kafka_2.13-$VERSION.jar" ] && return 0
	command -v java >/dev/null || apt_install openjdk-17-jre-headless
	command -v mvn >/dev/null || apt_install maven
	log "fetching Kafka $VERSION jars from Maven Central (once)"
	rm -rf "$LIBS.tmp"
	mvn -q -B -Dstyle.color=never -f "$PEERS_DIR/kafka/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >&2
	mv "$LIBS.tmp" "$LIBS"
}

# java_args are the JVM options of the broker and of its tools (those of
# the release's kafka-run-class.sh that matter here).
java_args() {
	echo -Xms"${KAFKA_HEAP:-1g}" -Xmx"${KAFKA_HEAP:-1g}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
		-XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
		-Dlog4j.configuration="file:$DIR/log4j.properties" -Dkafka.logs.dir="$DIR/logs"
}

start() {
	local mode="${1:-sync}" flush_line
	case "$mode" in
	sync) flush_line="log.flush.interval.messages=1" ;;
	async) flush_line="" ;;
	*) die "durability is sync or async, not $mode" ;;
	esac
	if running "$PIDFILE"; then log "already running (pid $(cat "$PIDFILE"))"; return 0; fi
	port_free "$PORT" || die "127.0.0.1:$PORT is taken"
	port_free "$CONTROLLER_PORT" || die "127.0.0.1:$CONTROLLER_PORT is taken"
	fetch_jars
	rm -rf "$DIR" && mkdir -p "$DIR/data" "$DIR/logs"
	cat >"$DIR/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=8388608
$flush_line
CONF
	cat >"$DIR/log4j.properties" <<CONF
log4j.rootLogger=WARN, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$DIR/logs/server.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
CONF
	echo "$mode" >"$DIR/durability"
	echo "$VERSION" >"$DIR/version"
	log "formatting the KRaft log dir"
	# shellcheck disable=SC2046 # java_args are words without spaces (paths aside)
	java $(java_args) -cp "$LIBS/*" kafka.tools.StorageTool format \
		-t "$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null)" \
		-c "$DIR/server.properties" >"$DIR/format.log" 2>&1 || { cat "$DIR/format.log" >&2; die "format failed"; }
	log "starting Kafka $VERSION (KRaft) on 127.0.0.1:$PORT ($mode), data in $DIR"
	# shellcheck disable=SC2046
	nohup java $(java_args) -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties" \
		>"$DIR/stdout.log" 2>&1 </dev/null &
	echo $! >"$PIDFILE"
	if ! wait_port "$PORT" 90; then
		tail -n 20 "$DIR/stdout.log" "$DIR/logs/server.log" >&2 || true
		die "Kafka did not start"
	fi
	log "running, pid $(cat "$PIDFILE")"
}

stop() {
	stop_pid "$PIDFILE" 60 "$DIR"
	log "stopped"
}

case "${1:-}" in
start) start "${2:-sync}" ;;
stop) stop ;;
status) if running "$PIDFILE"; then echo "running pid $(cat "$PIDFILE") ($(cat "$DIR/durability"))"; else echo "stopped"; exit 1; fi ;;
*) echo "usage: $0 start [sync|async] | stop | status" >&2; exit 2 ;;
esac
