#!/usr/bin/env bash
# Real AMQP 0-9-1 clients against a real dmsd (make amqp-clients-test, part
# of make test). Installs what the non-Go clients need, each pinned by the
# project: pika and kombu from PyPI (python/requirements.txt) into
# .cache/amqpclients/python, RabbitMQ's Java amqp-client from Maven Central
# (java/pom.xml) into .cache/amqpclients/java/<version>; then vets and runs
# the Go tests of this module, which start dmsd and run each client (and
# amqp091-go in-process). Needs Go, Python >= 3.10, a JDK 17 and Maven
# (installed from Debian if missing).
#
# The differential test runs every client's scenario against Debian's
# rabbitmq-server too: started here by loadtest/peers/rabbitmq.sh (the
# version pinned there) on 127.0.0.1 (the first free port from 25673) with its own
# data directory under .cache/amqpclients/peers, stopped when this script
# ends. DMS_AMQP_DIFFERENTIAL=0 skips it.
# Extra arguments go to go test (e.g. -run Pika -v).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cache="$root/.cache/amqpclients"
source "$root/scripts/apt.sh"

command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v mvn >/dev/null || apt_install maven

venv="$cache/python"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip --disable-pip-version-check --quiet install -r "$here/python/requirements.txt"

version="$(sed -n 's:.*<amqp.version>\(.*\)</amqp.version>.*:\1:p' "$here/java/pom.xml")"
libs="$cache/java/$version"
if [ ! -f "$libs/amqp-client-$version.jar" ]; then
	rm -rf "$libs.tmp"
	mvn -q -B -ntp -Dstyle.color=never -f "$here/java/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$libs.tmp"
	rm -rf "$libs" && mv "$libs.tmp" "$libs"
fi

if [ "${DMS_AMQP_DIFFERENTIAL:-1}" != 0 ]; then
	# The first free port from 25673 (its Erlang distribution port is
	# +20000, its private epmd -10000), so that two runs in two checkouts
	# do not meet.
	port="${RABBITMQ_PORT:-25673}"
	while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || (exec 3<>"/dev/tcp/127.0.0.1/$((port + 20000))") 2>/dev/null ||
		(exec 3<>"/dev/tcp/127.0.0.1/$((port - 10000))") 2>/dev/null; do
		port=$((port + 1))
	done
	export RABBITMQ_PORT="$port" RABBITMQ_EPMD_PORT="$((port - 10000))" DMS_BENCH_PEERS_DIR="$cache/peers"
	trap '"$root/loadtest/peers/rabbitmq.sh" stop >/dev/null 2>&1 || true' EXIT
	"$root/loadtest/peers/rabbitmq.sh" start
	export DMS_AMQP_RABBITMQ="127.0.0.1:$RABBITMQ_PORT"
fi

cd "$here"
go vet ./...
export DMS_AMQP_PYTHON="$venv/bin/python" DMS_AMQP_JAVA_LIBS="$libs"
go test -count=1 -timeout 10m ./... "$@"
