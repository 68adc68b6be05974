package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/opendms/dms/loadtest/bench"
	dmsdriver "github.com/opendms/dms/loadtest/drivers/dms"
)

// benchCommand runs loadtest's engine (bench.Run with the DMS drivers)
// against the context's dmsd: the same workloads, measurement and report
// as dms-bench, from the CLI. The driver makes its own queue and deletes it
// afterwards. It dials without a credential: on a dmsd with -auth.enabled,
// use dms-bench's own options.
func (a *app) benchCommand() *cobra.Command {
	var (
		w      bench.Workload
		kind   string
		driver string
		quiet  bool
		rf     int
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "A quick producer/consumer load against the cluster, with loadtest's engine (dms-bench)",
		Long: `Run a producer/consumer load with loadtest's engine (the one dms-bench
uses): a queue of its own (deleted afterwards), --producers and --consumers,
messages of --size bytes in batches of --batch, for --duration after
--warmup. Prints send and receive rates and latencies (publish and end to
end); -o json prints loadtest's full result.`,
		Example: `  dmsctl bench --duration 10s --size 1024 --producers 4 --consumers 4
  dmsctl bench --workload produce --rate 5000 -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w.Kind = bench.Kind(kind)
			w.Durability = bench.Sync
			if err := w.Validate(); err != nil {
				return usagef("%v", err)
			}
			cfg := dmsdriver.Config{GRPCAddr: a.ctx.Addr, Project: a.ctx.Project, ReplicationFactor: rf}
			var d bench.Driver
			switch driver {
			case "grpc":
				d = dmsdriver.NewGRPC(cfg)
			case "stream":
				d = dmsdriver.NewStream(cfg)
			default:
				return usagef("--driver %q is not grpc or stream", driver)
			}
			var progress io.Writer = a.err
			if quiet {
				progress = nil
			}
			res, err := bench.Run(cmd.Context(), "dms-"+driver, d, w, progress)
			if err != nil {
				return err
			}
			if res.Skipped != "" {
				return unavailablef("bench did not run: %s", res.Skipped)
			}
			return a.showValue(res, func(t *tabwriter.Writer) {
				row(t, "WORKLOAD", "SENT", "RECEIVED", "SEND MSG/S", "RECV MSG/S", "SEND MB/S", "PUBLISH P50/P99 MS", "E2E P50/P99 MS", "ERRORS")
				row(t, res.Workload.Name, res.Sent, res.Received, fmt.Sprintf("%.0f", res.SendRate), fmt.Sprintf("%.0f", res.RecvRate), fmt.Sprintf("%.2f", res.SendMBps),
					latencyText(res.Publish), latencyText(res.EndToEnd), res.Errors)
				if res.FirstError != "" {
					row(t, "first error:", res.FirstError)
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&kind, "workload", "e2e", "produce, consume, e2e or top")
	f.StringVar(&driver, "driver", "grpc", "grpc (SendMessages/ReceiveMessages) or stream (Subscribe)")
	f.IntVar(&w.MessageSize, "size", 1024, "message size in bytes (at least 32)")
	f.IntVar(&w.Producers, "producers", 2, "producers")
	f.IntVar(&w.Consumers, "consumers", 2, "consumers")
	f.IntVar(&w.Partitions, "partitions", 3, "partitions of the benchmark queue")
	f.IntVar(&rf, "replication-factor", 0, "replication factor of the benchmark queue (0: the cluster's default)")
	f.IntVar(&w.Batch, "batch", 100, "messages per send")
	f.IntVar(&w.ReceiveMax, "receive-max", 100, "messages per receive")
	f.Float64Var(&w.Rate, "rate", 0, "messages per second over all producers (0: as fast as possible)")
	f.DurationVar(&w.Duration, "duration", 10*time.Second, "measured time")
	f.DurationVar(&w.Warmup, "warmup", 2*time.Second, "time before measuring, left out of the results")
	f.Int64Var(&w.Messages, "messages", 0, "send exactly this many (then --duration is a time limit)")
	f.Int64Var(&w.Backlog, "backlog", 0, "messages prepared before a consume or top workload")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress lines on stderr")
	return cmd
}

func latencyText(l *bench.Latency) string {
	if l == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f/%.1f", l.P50, l.P99)
}
