// Command dms-bench measures DMS and its peers (NATS JetStream, RabbitMQ,
// Kafka) under the same workload in the same run, in the manner of the
// OpenMessaging Benchmark: one driver per system, warm-up left out,
// throughput and HDR-histogram latencies, server CPU and RSS, and a report as
// a table, JSON and an SVG plot.
//
//	dms-bench -drivers dms-grpc,dms-rest,nats -workload e2e -size 1024 -duration 15s
//	dms-bench -suite short -drivers all      # every scenario, briefly
//
// The DMS drivers start a fresh dmsd built from the repository for each run
// unless -dms-grpc names one; the peers are started by loadtest/peers/*.sh.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/opendms/dms/loadtest/bench"
	"github.com/opendms/dms/loadtest/drivers/dms"
	"github.com/opendms/dms/loadtest/drivers/jetstream"
	"github.com/opendms/dms/loadtest/drivers/kafka"
	"github.com/opendms/dms/loadtest/drivers/peer"
	"github.com/opendms/dms/loadtest/drivers/rabbitmq"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "dms-bench:", err)
		}
		os.Exit(1)
	}
}

// driverNames are the drivers in the order they run.
var driverNames = []string{"dms-grpc", "dms-stream", "dms-rest", "dms-kafka", "dms-amqp", "nats", "rabbitmq-quorum", "rabbitmq-classic", "kafka"}

// options are the command's flags.
type options struct {
	drivers string
	suite   string
	w       bench.Workload
	kind    string
	dur     string
	out     string
	format  string

	dmsGRPC, dmsHTTP, dmsKafka, dmsAMQP, dmsd, dmsSrc, dmsProject string
	dmsReplication                                                int
	dmsPID                                                        int
	natsURL, amqpURL, kafkaBrokers, peersDir                      string
}

func parseFlags(args []string, stderr io.Writer) (*options, map[string]bool, error) {
	o := &options{}
	f := flag.NewFlagSet("dms-bench", flag.ContinueOnError)
	f.SetOutput(stderr)
	f.StringVar(&o.drivers, "drivers", "dms-grpc,dms-rest", "Comma-separated drivers to run, in this order, or all: "+strings.Join(driverNames, ", ")+".")
	f.StringVar(&o.suite, "suite", "", "Run a named set of scenarios instead of one workload: short (every scenario briefly; see -h of each flag for what it overrides).")
	f.StringVar(&o.kind, "workload", "e2e", "produce (producers only), consume (drain a prepared backlog), e2e (produce, consume and ack) or top (e2e on the empty queue, then again at the top of a prepared backlog left unconsumed).")
	f.IntVar(&o.w.MessageSize, "size", 1024, "Message size in bytes (the first 8 are the send stamp).")
	f.IntVar(&o.w.Producers, "producers", 4, "Concurrent producers, each with its own connection.")
	f.IntVar(&o.w.Consumers, "consumers", 4, "Concurrent consumers in one consumer group.")
	f.IntVar(&o.w.Partitions, "partitions", 3, "Partitions of the queue or topic (where the system has them).")
	f.IntVar(&o.w.Batch, "batch", 100, "Messages per send call (lowered to what a system's API takes: 10 for DMS v1.0 REST).")
	f.DurationVar(&o.w.Linger, "linger", 5*time.Millisecond, "With -rate: the longest a producer waits for its batch to fill.")
	f.IntVar(&o.w.ReceiveMax, "receive-max", 100, "Messages per receive call (lowered to what a system's API returns).")
	f.DurationVar(&o.w.ReceiveWait, "receive-wait", time.Second, "How long a receive waits for a first message (long poll; whole seconds for DMS v1.0 REST).")
	f.Float64Var(&o.w.Rate, "rate", 0, "Target send rate in messages/s over all producers; 0 sends as fast as acknowledgements allow.")
	f.StringVar(&o.dur, "durability", "sync", "sync: fsync before the send is acknowledged; async: acknowledged before fsync.")
	f.DurationVar(&o.w.Duration, "duration", 15*time.Second, "Measured time; with -messages, the time limit.")
	f.DurationVar(&o.w.Warmup, "warmup", 3*time.Second, "Time run before measuring, left out of the results.")
	f.Int64Var(&o.w.Messages, "messages", 0, "When above 0, send exactly this many measured messages (and, for e2e, consume them all) instead of running for -duration.")
	f.Int64Var(&o.w.Backlog, "backlog", 50000, "Messages prepared for a consume workload (draining them is measured from the start, no warm-up) or a top workload (stored between its two runs).")
	f.DurationVar(&o.w.Interval, "interval", time.Second, "Progress line and time-series step.")
	f.StringVar(&o.out, "out", "dms-bench-results", "Directory for report.json, report.txt and one SVG plot per scenario.")
	f.StringVar(&o.format, "format", "table", "What goes to standard output at the end: table or json (progress goes to standard error).")
	f.StringVar(&o.dmsGRPC, "dms-grpc", "", "gRPC address of a running dmsd; empty builds dmsd and starts a fresh one per run.")
	f.StringVar(&o.dmsHTTP, "dms-http", "", "HTTP address of the running dmsd named by -dms-grpc (for dms-rest).")
	f.StringVar(&o.dmsKafka, "dms-kafka", "", "Kafka listener address of the running dmsd named by -dms-grpc (for dms-kafka).")
	f.StringVar(&o.dmsAMQP, "dms-amqp", "", "AMQP listener address of the running dmsd named by -dms-grpc (for dms-amqp).")
	f.IntVar(&o.dmsPID, "dms-pid", 0, "Process id of the running dmsd, for its CPU and RSS.")
	f.StringVar(&o.dmsd, "dmsd", "", "A dmsd binary to start instead of building one.")
	f.StringVar(&o.dmsSrc, "dms-src", "", "Repository root to build dmsd from; found from the working directory when empty.")
	f.IntVar(&o.dmsReplication, "dms-replication", 0, "Replication factor of the DMS benchmark queues; 0 takes the cluster's default (compare 1 and 3 on a three-node cluster).")
	f.StringVar(&o.dmsProject, "dms-project", "0123456789abcdef0123456789abcdef", "DMS project that owns the benchmark queues.")
	f.StringVar(&o.natsURL, "nats-url", "nats://127.0.0.1:4222", "NATS server (loadtest/peers/nats.sh start).")
	f.StringVar(&o.amqpURL, "amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ server (loadtest/peers/rabbitmq.sh start).")
	f.StringVar(&o.kafkaBrokers, "kafka-brokers", "127.0.0.1:9092", "Comma-separated Kafka brokers (loadtest/peers/kafka.sh start).")
	f.StringVar(&o.peersDir, "peers-dir", peer.DefaultDir(), "State directory of loadtest/peers/*.sh: server pids (for CPU and RSS) and durability modes.")
	if err := f.Parse(args); err != nil {
		return nil, nil, err
	}
	if f.NArg() > 0 {
		return nil, nil, fmt.Errorf("unexpected arguments %q", f.Args())
	}
	set := map[string]bool{}
	f.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	o.w.Kind, o.w.Durability = bench.Kind(o.kind), bench.Durability(o.dur)
	if o.drivers == "all" {
		o.drivers = strings.Join(driverNames, ",")
	}
	for _, name := range strings.Split(o.drivers, ",") {
		if !slices.Contains(driverNames, name) {
			return nil, nil, fmt.Errorf("unknown driver %q; drivers are %s", name, strings.Join(driverNames, ", "))
		}
	}
	if o.format != "table" && o.format != "json" {
		return nil, nil, fmt.Errorf("-format is table or json, not %q", o.format)
	}
	return o, set, nil
}

// scenarios returns the workloads to run: the one the flags describe, or
// those of the named suite with the flags' shared settings.
func scenarios(o *options, set map[string]bool) ([]bench.Workload, error) {
	switch o.suite {
	case "":
		w := o.w
		return []bench.Workload{w}, w.Validate()
	case "short":
	default:
		return nil, fmt.Errorf("unknown suite %q; suites: short", o.suite)
	}
	// short: every scenario of the issue briefly — produce-only at max rate,
	// draining a backlog, end-to-end at a fixed rate (the same message count
	// for every system) for 100 B, 1 KiB and 16 KiB, and end-to-end at the
	// top of a backlog. Explicit flags override the suite's durations, rate
	// and backlog.
	base := o.w
	if !set["duration"] {
		base.Duration = 5 * time.Second
	}
	if !set["warmup"] {
		base.Warmup = 2 * time.Second // a fresh server's first receives can be slow
	}
	rate := 2000.0
	if set["rate"] {
		rate = o.w.Rate
	}
	with := func(name string, kind bench.Kind, size int, rate float64) bench.Workload {
		w := base
		w.Name, w.Kind, w.MessageSize, w.Rate = name, kind, size, rate
		return w
	}
	ws := []bench.Workload{
		with("produce-1KiB", bench.Produce, 1024, 0),
		with("consume-1KiB", bench.Consume, 1024, 0),
		with("e2e-100B", bench.EndToEnd, 100, rate),
		with("e2e-1KiB", bench.EndToEnd, 1024, rate),
		with("e2e-16KiB", bench.EndToEnd, 16<<10, rate/4),
		with("top-100B", bench.Top, 100, rate),
	}
	for i := range ws {
		if err := ws[i].Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", ws[i].Name, err)
		}
	}
	return ws, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, set, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	workloads, err := scenarios(o, set)
	if err != nil {
		return err
	}
	names := strings.Split(o.drivers, ",")

	var launcher *dms.Launcher
	if o.dmsGRPC == "" && slices.ContainsFunc(names, bench.IsDMS) {
		launcher = &dms.Launcher{Binary: o.dmsd, RepoDir: o.dmsSrc}
		if o.dmsd == "" && o.dmsSrc == "" {
			wd, _ := os.Getwd()
			if launcher.RepoDir, err = dms.FindRepo(wd); err != nil {
				return err
			}
		}
		defer launcher.Close()
	}
	newDriver := func(name string) bench.Driver {
		dmsCfg := dms.Config{GRPCAddr: o.dmsGRPC, HTTPAddr: o.dmsHTTP, KafkaAddr: o.dmsKafka, AMQPAddr: o.dmsAMQP, PID: o.dmsPID, Project: o.dmsProject, Launcher: launcher, ReplicationFactor: o.dmsReplication}
		switch name {
		case "dms-grpc":
			return dms.NewGRPC(dmsCfg)
		case "dms-stream":
			return dms.NewStream(dmsCfg)
		case "dms-rest":
			return dms.NewREST(dmsCfg)
		case "dms-kafka":
			return dms.NewKafka(dmsCfg)
		case "dms-amqp":
			return dms.NewAMQP(dmsCfg)
		case "nats":
			return jetstream.New(jetstream.Config{URL: o.natsURL, PeersDir: o.peersDir})
		case "rabbitmq-quorum":
			return rabbitmq.New(rabbitmq.Config{URL: o.amqpURL, Type: rabbitmq.Quorum, PeersDir: o.peersDir})
		case "rabbitmq-classic":
			return rabbitmq.New(rabbitmq.Config{URL: o.amqpURL, Type: rabbitmq.Classic, PeersDir: o.peersDir})
		case "kafka":
			return kafka.New(kafka.Config{Brokers: strings.Split(o.kafkaBrokers, ","), PeersDir: o.peersDir})
		}
		panic("unknown driver " + name) // names were checked with the flags
	}

	report := bench.NewReport()
	var failed []string
	for _, w := range workloads {
		s := &bench.Scenario{Workload: w}
		report.Scenarios = append(report.Scenarios, s)
		fmt.Fprintf(stderr, "== %s: %s\n", w.Name, w.Describe())
		for _, name := range names {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res, err := bench.Run(ctx, name, newDriver(name), w, stderr)
			switch {
			case err != nil && res == nil:
				fmt.Fprintf(stderr, "%-18s skipped: %v\n", name, err)
				res = &bench.Result{Driver: name, Workload: w, Skipped: err.Error()}
			case err != nil: // measured, but cleaning up failed
				fmt.Fprintf(stderr, "%-18s %v\n", name, err)
				res.Notes = append(res.Notes, err.Error())
			}
			s.Results = append(s.Results, res)
			if bench.IsDMS(name) && (res.Skipped != "" || !res.Complete) {
				failed = append(failed, w.Name+"/"+name)
			}
		}
		if o.format == "table" {
			s.WriteTable(stdout)
			fmt.Fprintln(stdout)
		}
	}
	paths, err := report.WriteFiles(o.out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s\n", strings.Join(paths, ", "))
	if o.format == "json" {
		f, err := os.Open(paths[0])
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.Copy(stdout, f); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("DMS runs that failed or did not finish: %s", strings.Join(failed, ", "))
	}
	return nil
}
