# The project's commands. `make test` is what CI runs (.ci/run): it installs
# the pinned tools, checks the protos and generated code, builds and vets
# every Go module and runs every test suite.

SHELL := /bin/bash
BIN := $(CURDIR)/.cache/bin
export PATH := $(BIN):$(PATH)
GO_MODULES := gen services sdk/go loadtest

.PHONY: fault-test run test tools generate check-generated console console-check console-test console-screenshots lint-proto breaking build vet go-test python-test java-test kafka-clients-test amqp-clients-test dms-clients-test api-fuzz fuzz fuzz-short bench bench-load bench-target bench-backlog image deploy-test rolling-upgrade-test

run: ## Run dmsd with every role, embedded etcd and ./data.
	go run ./services/cmd/dmsd

test: tools check-generated console-check lint-proto breaking build vet go-test python-test java-test kafka-clients-test amqp-clients-test dms-clients-test console-test api-fuzz fuzz-short deploy-test

tools:
	@./scripts/tools.sh >/dev/null

generate: tools ## Regenerate Go code and the OpenAPI document from proto/.
	buf generate
	buf generate --template buf.gen.openapi.yaml

check-generated: generate
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
		echo "generated code is stale: run 'make generate' and commit the result"; \
		git status --porcelain -- gen; exit 1; fi

# The web console (services/console): web/ is built by Vite into dist/, which
# is committed and embedded into dmsd, so that running dmsd needs no npm.
console: ## Rebuild the web console's committed assets from services/console/web (npm, versions pinned in its package-lock.json).
	cd services/console/web && { [ "$$(cat node_modules/.installed-lock 2>/dev/null)" = "$$(sha256sum < package-lock.json)" ] || \
		{ npm ci --no-audit --no-fund --loglevel=error && sha256sum < package-lock.json > node_modules/.installed-lock; }; } && npm run build

console-check: console
	@if [ -n "$$(git status --porcelain -- services/console/dist)" ]; then \
		echo "the console's built assets are stale: run 'make console' and commit services/console/dist"; \
		git status --porcelain -- services/console/dist; exit 1; fi

console-test: ## The web console in a real browser: Debian's chromium (installed by scripts/apt.sh) driven by chromedp against a real dmsd (~30 s).
	bash tests/console/run.sh

console-screenshots: ## Retake the console's screenshots in docs/console (shown in the README).
	DMS_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console bash tests/console/run.sh -run 'TestConsole'

lint-proto: tools
	buf lint

breaking: tools
	./scripts/buf-breaking.sh

# Modules that have packages yet (a module whose issue has not landed is
# skipped, not failed).
modules = $(foreach m,$(GO_MODULES),$(if $(shell cd $(m) && go list ./... 2>/dev/null),$(m)))

build:
	@for m in $(modules); do echo "go build $$m"; (cd $$m && go build ./...) || exit 1; done

vet:
	@for m in $(modules); do echo "go vet $$m"; (cd $$m && go vet ./...) || exit 1; done
	@test -z "$$(gofmt -l $(GO_MODULES) tests)" || { gofmt -l $(GO_MODULES) tests; echo "gofmt needed"; exit 1; }

go-test:
	@for m in $(modules); do (cd $$m && go test -count=1 -timeout 20m ./...) || exit 1; done

python-test: ## The Python SDK against a dmsd built from this tree (needs python3, pip, PyPI).
	bash sdk/python/scripts/test.sh

kafka-clients-test: ## Real Kafka clients (sarama, kafka-go, confluent-kafka-python, kafka-python, kcat, Java kafka-clients) against a real dmsd; installs the pinned clients.
	bash tests/kafkaclients/run.sh

amqp-clients-test: ## Real AMQP 0-9-1 clients (pika blocking and select, kombu, RabbitMQ's Java amqp-client, amqp091-go) against a real dmsd, and the same scenarios against Debian's rabbitmq-server (differential); installs the pinned clients and RabbitMQ.
	bash tests/amqpclients/run.sh

dms-clients-test: ## DMS users' own clients (the Huawei Cloud SDK's AK/SK signer, keystoneauth1) against a dmsd with -auth.enabled; installs them pinned.
	bash tests/dmsclients/run.sh

api-fuzz: ## Property-based tests of the native REST API: schemathesis against /openapi.json of a real dmsd (~1 min).
	./scripts/schemathesis/run.sh

fuzz: ## Every Go fuzz target of the repository for FUZZTIME each (default 2m; long).
	FUZZTIME=$${FUZZTIME:-2m} ./scripts/fuzz.sh

# 3 s each: the ten targets took 1m27s in all with a warm build cache on the
# project's two-core machine (load 14); most of it is building the
# instrumented test binaries, not fuzzing.
fuzz-short: ## Every Go fuzz target for a few seconds each (in make test).
	FUZZTIME=$${FUZZTIME:-3s} ./scripts/fuzz.sh

java-test: ## The Java SDK: stubs generated from proto/ at build time, tests against a real dmsd.
	bash sdk/java/scripts/test.sh

bench: ## Short benchmarks of the send paths and the partition log, then dms-bench's short suite.
	cd services && go test -run '^$$' -bench . -benchtime 3s ./server/ ./storage/partitionlog/
	$(MAKE) bench-load

bench-load: ## dms-bench: every scenario briefly (<5 min) for DMS and its peers, fsync before ack; prints the table.
	cd loadtest && ./peers/with-peers.sh sync -- go run ./cmd/dms-bench -suite short -drivers all -out $(CURDIR)/.cache/bench

# The issue's two targets in full, each with the peers in the same run.
E2E_SHAPE = -size 1024 -durability sync -warmup 5s -receive-max 1000 -batch 200 -producers 4 -consumers 6 -partitions 3

bench-target: ## dms-bench: end to end, 1 KiB, fsync before ack, 60 s at max rate and at 50k msg/s, DMS and every peer (~20 min).
	cd loadtest && ./peers/with-peers.sh sync -- go run ./cmd/dms-bench -drivers all -workload e2e $(E2E_SHAPE) -duration 60s -out $(CURDIR)/.cache/bench-target
	cd loadtest && ./peers/with-peers.sh sync -- go run ./cmd/dms-bench -drivers all -workload e2e $(E2E_SHAPE) -duration 60s -rate 50000 -out $(CURDIR)/.cache/bench-target-50k

bench-backlog: ## dms-bench: 100 B at 150k msg/s on the empty queue, then at the top of 100M stored messages (~10 GB per system), DMS and Kafka (~25 min).
	cd loadtest && PEERS=kafka ./peers/with-peers.sh sync -- go run ./cmd/dms-bench -drivers dms-grpc,kafka -workload top -backlog 100000000 -size 100 -rate 150000 -duration 60s -warmup 5s -receive-max 1000 -batch 1000 -producers 4 -consumers 6 -partitions 3 -interval 10s -out $(CURDIR)/.cache/bench-backlog

FAULT_CYCLES ?= 100
fault-test: ## Fault harness: 3 dmsd processes under load, FAULT_CYCLES rounds of every fault kind (kill, pause, etcd loss, partition); prints the figures.
	cd services && FAULT_CYCLES=$(FAULT_CYCLES) go test -count=1 -timeout 0 -run '^TestFaults$$' -v ./faulttest/

# The container image without a Docker daemon (deploy/image): the same
# commit gives the same image digest (file times are the commit's time).
IMAGE_DIR := $(CURDIR)/.cache/image
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
STATIC_BUILD = CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w"

image: ## Container image of static dmsd (and dmsctl) on an empty base: .cache/image/dms.tar (docker/podman load) and .cache/image/oci (OCI layout).
	@mkdir -p $(IMAGE_DIR)
	cd services && $(STATIC_BUILD) -o $(IMAGE_DIR)/dmsd ./cmd/dmsd
	@if [ -d services/cmd/dmsctl ]; then echo "building dmsctl"; cd services && $(STATIC_BUILD) -o $(IMAGE_DIR)/dmsctl ./cmd/dmsctl; else rm -f $(IMAGE_DIR)/dmsctl; fi
	cd deploy && GOWORK=off go run ./cmd/dms-image -dmsd $(IMAGE_DIR)/dmsd $$([ -f $(IMAGE_DIR)/dmsctl ] && echo -dmsctl $(IMAGE_DIR)/dmsctl) \
		-version $(VERSION) -revision $$(git rev-parse HEAD) -created $$(git log -1 --format=%cI) \
		-tag dms:$(VERSION) -tar $(IMAGE_DIR)/dms.tar -oci $(IMAGE_DIR)/oci

# deploy/ is a module of its own, outside go.work, so that the Kubernetes
# and Helm libraries its tests use never change the versions the services
# are built with.
deploy-test: ## deploy/: the image and its Dockerfile, the Helm chart, the compose file and systemd units.
	cd deploy && GOWORK=off go vet ./... && test -z "$$(gofmt -l .)" && GOWORK=off go test -count=1 ./...

rolling-upgrade-test: ## Rolling upgrade on deploy/local-cluster.sh: 3 nodes restarted in turn under load (RF 3); 0 acknowledged lost, longest send gap reported (~2-3 min).
	cd services && ROLLING_NODES=3 go test -count=1 -timeout 15m -run '^TestRollingUpgrade$$' -v ./faulttest/
