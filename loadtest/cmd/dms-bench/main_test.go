package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/dms"
)

// TestSmoke is the CI run of the harness: it builds dmsd, and for each DMS
// driver starts a fresh one and runs the top workload: 2000 messages sent,
// consumed and acked on the empty queue, a backlog of 5000 stored and
// skipped, 2000 more at its top; it checks the counts and the JSON, table
// and SVG outputs. It needs no peers, so that the harness cannot rot
// unnoticed.
func TestSmoke(t *testing.T) {
	repo, err := dms.FindRepo(".")
	if err != nil {
		t.Skipf("not inside the DMS repository: %v", err)
	}
	smoke(t, bench.Top, []string{"dms-grpc", "dms-stream", "dms-rest"}, "-dms-src", repo, "-peers-dir", t.TempDir())
}

// TestSmokeDMSKafka runs the top workload through dms-kafka: franz-go
// against dmsd's Kafka listener, the group moved past the backlog by
// committing the end offsets. One consumer: with two, a rebalance while
// the first holds uncommitted records delivers them twice (at least once,
// as Kafka's consumer groups are), which the exact counts would not allow.
func TestSmokeDMSKafka(t *testing.T) {
	repo, err := dms.FindRepo(".")
	if err != nil {
		t.Skipf("not inside the DMS repository: %v", err)
	}
	smoke(t, bench.Top, []string{"dms-kafka"}, "-dms-src", repo, "-peers-dir", t.TempDir(), "-consumers", "1")
}

// TestSmokeDMSAMQP runs the end-to-end workload through dms-amqp:
// amqp091-go with confirms and acks against dmsd's AMQP listener (an AMQP
// queue, like RabbitMQ's, cannot skip a backlog, so not the top workload).
func TestSmokeDMSAMQP(t *testing.T) {
	repo, err := dms.FindRepo(".")
	if err != nil {
		t.Skipf("not inside the DMS repository: %v", err)
	}
	smoke(t, bench.EndToEnd, []string{"dms-amqp"}, "-dms-src", repo, "-peers-dir", t.TempDir())
}

// TestPeersSmoke does the same with the peer drivers. It needs the peers
// running, so it runs only when asked:
//
//	loadtest/peers/with-peers.sh -- env DMS_BENCH_PEERS=1 go test -run PeersSmoke ./cmd/dms-bench
func TestPeersSmoke(t *testing.T) {
	if os.Getenv("DMS_BENCH_PEERS") == "" {
		t.Skip("set DMS_BENCH_PEERS=1 with the peers running (loadtest/peers/with-peers.sh) to run")
	}
	smoke(t, bench.Top, []string{"nats", "kafka"})
	// RabbitMQ's queues cannot skip a backlog.
	smoke(t, bench.EndToEnd, []string{"rabbitmq-quorum", "rabbitmq-classic"})
}

// smoke runs an end-to-end or top workload of 2000 messages (each way) with
// drivers and checks the counts and the reports.
func smoke(t *testing.T, kind bench.Kind, drivers []string, args ...string) {
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	const messages = 2000
	err := run(ctx, append([]string{
		"-drivers", strings.Join(drivers, ","),
		"-workload", string(kind),
		"-backlog", "5000",
		"-messages", "2000",
		"-warmup", "0",
		"-duration", "2m",
		"-size", "1024",
		"-producers", "2",
		"-consumers", "2",
		"-out", out,
	}, args...), &stdout, &stderr)
	t.Logf("progress:\n%s", stderr.String())
	if err != nil {
		t.Fatalf("dms-bench: %v", err)
	}

	data, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var report bench.Report
	if err := json.Unmarshal(data, &report); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	if len(report.Scenarios) != 1 || len(report.Scenarios[0].Results) != len(drivers) {
		t.Fatalf("report.json has %d scenarios, want 1 with %d results", len(report.Scenarios), len(drivers))
	}
	for _, res := range report.Scenarios[0].Results {
		t.Run(res.Driver, func(t *testing.T) {
			if res.Skipped != "" || !res.Complete || res.Errors != 0 {
				t.Fatalf("skipped %q, complete %v, %d errors (first: %s)", res.Skipped, res.Complete, res.Errors, res.FirstError)
			}
			// The consumers at the top of the backlog receive what was sent
			// after it, none of it: exactly the messages of each run.
			runs := []*bench.Result{res}
			if kind == bench.Top {
				if res.EmptyQueue == nil {
					t.Fatal("no run on the empty queue")
				}
				if res.Backlog == nil || res.Backlog.Messages != 5000 || res.Backlog.SendRate <= 0 {
					t.Errorf("backlog stats %+v, want 5000 messages sent", res.Backlog)
				}
				runs = append(runs, res.EmptyQueue)
			}
			for _, r := range runs {
				if r.Sent != messages || r.Received != messages || r.Stale != 0 {
					t.Errorf("%s: sent %d and received %d (%d sent before the run), want %d each and none before", r.Driver, r.Sent, r.Received, r.Stale, messages)
				}
			}
			if res.Publish == nil || res.Publish.Count != messages {
				t.Errorf("publish latency %+v, want %d samples", res.Publish, messages)
			}
			if res.EndToEnd == nil || res.EndToEnd.Count != messages || res.EndToEnd.P50 <= 0 {
				t.Errorf("e2e latency %+v, want %d positive samples", res.EndToEnd, messages)
			}
			if res.Server == nil || res.Server.PID == 0 || res.Server.RSSMaxMB <= 0 {
				t.Errorf("server stats %+v, want the server's pid and RSS", res.Server)
			}
			if res.SendRate <= 0 || res.RecvRate <= 0 {
				t.Errorf("rates %v and %v, want both positive", res.SendRate, res.RecvRate)
			}
		})
	}

	table := stdout.String()
	for _, want := range append([]string{"sent msg/s", "e2e p50", "fsync before"}, drivers...) {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if text, err := os.ReadFile(filepath.Join(out, "report.txt")); err != nil || !bytes.Contains(text, []byte(drivers[0])) {
		t.Errorf("report.txt: %v\n%s", err, text)
	}
	plot := string(kind) + "-1KiB.svg"
	svg, err := os.ReadFile(filepath.Join(out, plot))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(svg, []byte("<svg")) || !bytes.Contains(svg, []byte("<polyline")) || !bytes.HasSuffix(svg, []byte("</svg>\n")) {
		t.Errorf("%s is not a plot with lines:\n%s", plot, svg)
	}
}

func TestFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // part of the error; empty for none
	}{
		{"unknown driver", []string{"-drivers", "dms-grpc,activemq"}, `unknown driver "activemq"`},
		{"bad workload", []string{"-workload", "burst"}, `workload "burst"`},
		{"bad durability", []string{"-durability", "maybe"}, `durability "maybe"`},
		{"consume without backlog", []string{"-workload", "consume", "-backlog", "0"}, "needs a backlog"},
		{"top without backlog", []string{"-workload", "top", "-backlog", "0"}, "top workload needs a backlog"},
		{"unknown suite", []string{"-suite", "long"}, `unknown suite "long"`},
		{"short suite", []string{"-suite", "short", "-drivers", "all"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			o, set, err := parseFlags(tc.args, &stderr)
			if err == nil {
				var ws []bench.Workload
				ws, err = scenarios(o, set)
				if err == nil && tc.want == "" && len(ws) != 6 {
					t.Errorf("short suite has %d scenarios, want 6", len(ws))
				}
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
