package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

func (a *app) queueCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "queue", Aliases: []string{"queues", "q"}, Short: "Create, list, describe, update and delete queues; their stats"}
	cmd.AddCommand(a.queueCreate(), a.queueList(), a.queueDescribe(), a.queueUpdate(), a.queueDelete(), a.queueStats())
	return cmd
}

// completeQueues completes queue display names.
func (a *app) completeQueues(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if err := a.resolve(cmd); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	qs, err := a.queues()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	ctx, cancel, err := a.call(cmd.Context())
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	defer cancel()
	resp, err := qs.ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: a.projectName()})
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, q := range resp.GetQueues() {
		names = append(names, q.GetDisplayName())
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

var queueModes = map[string]dmsv1.QueueMode{
	"normal": dmsv1.QueueMode_QUEUE_MODE_NORMAL, "fifo": dmsv1.QueueMode_QUEUE_MODE_FIFO, "kafka-ha": dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA,
	"kafka-ht": dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT, "amqp": dmsv1.QueueMode_QUEUE_MODE_AMQP,
}

func modeText(m dmsv1.QueueMode) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(m.String(), "QUEUE_MODE_"), "_", "-"))
}

func (a *app) queueCreate() *cobra.Command {
	var (
		mode, description          string
		partitions, rf, maxConsume int32
		retention                  time.Duration
		deadLetters, dryRun        bool
	)
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a queue",
		Args:  exactArgs(1, "NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, ok := queueModes[mode]
			if !ok {
				return usagef("--mode %q is not one of normal, fifo, kafka-ha, kafka-ht, amqp", mode)
			}
			req := &dmsv1.CreateQueueRequest{Parent: a.projectName(), Queue: &dmsv1.Queue{
				DisplayName: args[0], Description: description, Mode: m, PartitionCount: partitions, ReplicationFactor: rf,
				DeadLetterEnabled: deadLetters, MaxConsumeCount: maxConsume,
			}}
			if retention > 0 {
				req.Queue.Retention = durationpb.New(retention)
			}
			if dryRun {
				return a.dryRun("create queue", req)
			}
			qs, err := a.queues()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := qs.CreateQueue(ctx, req)
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) { queueTable(t, resp.GetQueue()) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&mode, "mode", "normal", "normal, fifo, kafka-ha, kafka-ht or amqp")
	f.StringVar(&description, "description", "", "free text, at most 160 characters")
	f.Int32Var(&partitions, "partitions", 0, "partitions (0: the cluster's default; FIFO queues have one)")
	f.Int32Var(&rf, "replication-factor", 0, "copies of each partition (0: the cluster's default)")
	f.DurationVar(&retention, "retention", 0, "how long messages are kept, 1h to 72h (0: 72h)")
	f.BoolVar(&deadLetters, "dead-letters", false, "move messages that failed --max-consume-count times to the group's dead-letter queue")
	f.Int32Var(&maxConsume, "max-consume-count", 0, "failed attempts before a message becomes a dead letter (1 to 100)")
	f.BoolVar(&dryRun, "dry-run", false, "print the request and change nothing")
	_ = cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions([]string{"normal", "fifo", "kafka-ha", "kafka-ht", "amqp"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func queueTable(t *tabwriter.Writer, q *dmsv1.Queue) {
	row(t, "NAME", "ID", "MODE", "PARTITIONS", "RF", "MESSAGES", "SCHEDULED", "GROUPS", "RETENTION", "DEAD LETTERS")
	dl := "off"
	if q.GetDeadLetterEnabled() {
		dl = fmt.Sprintf("after %d", q.GetMaxConsumeCount())
	}
	row(t, q.GetDisplayName(), q.GetId(), modeText(q.GetMode()), q.GetPartitionCount(), q.GetReplicationFactor(), q.GetMessageCount(),
		q.GetScheduledMessageCount(), q.GetGroupCount(), q.GetRetention().AsDuration(), dl)
}

func (a *app) queueList() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the project's queues with their counts",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			qs, err := a.queues()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := qs.ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: a.projectName()})
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) {
				row(t, "NAME", "ID", "MODE", "PARTITIONS", "MESSAGES", "SCHEDULED", "GROUPS", "CREATED")
				for _, q := range resp.GetQueues() {
					row(t, q.GetDisplayName(), q.GetId(), modeText(q.GetMode()), q.GetPartitionCount(), q.GetMessageCount(), q.GetScheduledMessageCount(),
						q.GetGroupCount(), timeText(q.GetCreateTime()))
				}
			})
		},
	}
}

func (a *app) getQueue(ctx context.Context, name string) (*dmsv1.Queue, error) {
	qs, err := a.queues()
	if err != nil {
		return nil, err
	}
	resp, err := qs.GetQueue(ctx, &dmsv1.GetQueueRequest{Name: a.queueName(name)})
	return resp.GetQueue(), err
}

func (a *app) queueDescribe() *cobra.Command {
	return &cobra.Command{
		Use:               "describe QUEUE",
		Aliases:           []string{"get", "show"},
		Short:             "Show a queue's settings and counts",
		Args:              exactArgs(1, "QUEUE"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			qs, err := a.queues()
			if err != nil {
				return err
			}
			resp, err := qs.GetQueue(ctx, &dmsv1.GetQueueRequest{Name: a.queueName(args[0])})
			if err != nil {
				return err
			}
			q := resp.GetQueue()
			return a.show(resp, func(t *tabwriter.Writer) {
				row(t, "Name:", q.GetDisplayName())
				row(t, "ID:", q.GetId())
				row(t, "Resource:", q.GetName())
				row(t, "Description:", orDash(q.GetDescription()))
				row(t, "Mode:", modeText(q.GetMode()))
				row(t, "Partitions:", q.GetPartitionCount())
				row(t, "Replication factor:", q.GetReplicationFactor())
				row(t, "Retention:", q.GetRetention().AsDuration())
				if q.GetDeadLetterEnabled() {
					row(t, "Dead letters:", fmt.Sprintf("after %d failed attempts", q.GetMaxConsumeCount()))
				} else {
					row(t, "Dead letters:", "off")
				}
				row(t, "Messages:", q.GetMessageCount())
				row(t, "Scheduled:", q.GetScheduledMessageCount())
				if nt := timeText(q.GetNextScheduledTime()); nt != "" {
					row(t, "Next due:", nt)
				}
				row(t, "Groups:", q.GetGroupCount())
				row(t, "Max message bytes:", q.GetMaxMessageBytes())
				row(t, "Created:", timeText(q.GetCreateTime()))
			})
		},
	}
}

func (a *app) queueUpdate() *cobra.Command {
	var (
		description            string
		retention              time.Duration
		deadLetters, dryRun    bool
		maxConsume, partitions int32
	)
	cmd := &cobra.Command{
		Use:               "update QUEUE",
		Short:             "Change a queue's description, retention, dead-letter settings or (up only) partitions",
		Args:              exactArgs(1, "QUEUE"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			f := cmd.Flags()
			req := &dmsv1.UpdateQueueRequest{Name: a.queueName(args[0]), Queue: &dmsv1.Queue{}, UpdateMask: &fieldmaskpb.FieldMask{}}
			if f.Changed("description") {
				req.Queue.Description = description
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "description")
			}
			if f.Changed("retention") {
				req.Queue.Retention = durationpb.New(retention)
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "retention")
			}
			if f.Changed("dead-letters") {
				req.Queue.DeadLetterEnabled = deadLetters
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "dead_letter_enabled")
			}
			if f.Changed("max-consume-count") {
				req.Queue.MaxConsumeCount = maxConsume
				req.UpdateMask.Paths = append(req.UpdateMask.Paths, "max_consume_count")
			}
			addParts := f.Changed("partitions")
			if len(req.UpdateMask.Paths) == 0 && !addParts {
				return usagef("nothing to change: give --description, --retention, --dead-letters, --max-consume-count or --partitions")
			}
			if dryRun {
				if addParts {
					if err := a.dryRun("add partitions", &dmsv1.AddPartitionsRequest{Name: req.Name, PartitionCount: partitions}); err != nil {
						return err
					}
				}
				if len(req.UpdateMask.Paths) > 0 {
					return a.dryRun("update queue", req)
				}
				return nil
			}
			qs, err := a.queues()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			var q *dmsv1.Queue
			if len(req.UpdateMask.Paths) > 0 {
				resp, err := qs.UpdateQueue(ctx, req)
				if err != nil {
					return err
				}
				q = resp.GetQueue()
			}
			if addParts {
				resp, err := qs.AddPartitions(ctx, &dmsv1.AddPartitionsRequest{Name: req.Name, PartitionCount: partitions})
				if err != nil {
					return err
				}
				q = resp.GetQueue()
			}
			return a.show(q, func(t *tabwriter.Writer) { queueTable(t, q) })
		},
	}
	f := cmd.Flags()
	f.StringVar(&description, "description", "", "new description")
	f.DurationVar(&retention, "retention", 0, "new retention, 1h to 72h")
	f.BoolVar(&deadLetters, "dead-letters", false, "keep dead letters (--dead-letters=false turns them off)")
	f.Int32Var(&maxConsume, "max-consume-count", 0, "failed attempts before a message becomes a dead letter")
	f.Int32Var(&partitions, "partitions", 0, "raise the partition count to this (NORMAL and Kafka queues)")
	f.BoolVar(&dryRun, "dry-run", false, "print the requests and change nothing")
	return cmd
}

func (a *app) queueDelete() *cobra.Command {
	var dryRun, yes bool
	cmd := &cobra.Command{
		Use:               "delete QUEUE",
		Aliases:           []string{"rm"},
		Short:             "Delete a queue, its groups and all its messages (cannot be undone)",
		Args:              exactArgs(1, "QUEUE"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.DeleteQueueRequest{Name: a.queueName(args[0])}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if dryRun {
				// Say what would go: the queue must exist.
				q, err := a.getQueue(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(a.err, "dry run: would delete queue %s (%s) with %d messages and %d groups\n", q.GetDisplayName(), q.GetId(), q.GetMessageCount(), q.GetGroupCount())
				return a.dryRun("delete queue", req)
			}
			if !yes && isTerminal(a.err) && !confirm(a, fmt.Sprintf("delete queue %s and all its messages?", args[0])) {
				return usagef("not confirmed")
			}
			qs, err := a.queues()
			if err != nil {
				return err
			}
			resp, err := qs.DeleteQueue(ctx, req)
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) { row(t, "deleted", args[0]) })
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the queue exists, print the request and change nothing")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation on a terminal")
	return cmd
}

// QueueStats is what `queue stats` prints: the queue's counts and each
// group's backlog.
type QueueStats struct {
	Queue          string       `json:"queue"`
	ID             string       `json:"id"`
	Messages       int64        `json:"messages"`
	Scheduled      int64        `json:"scheduledMessages"`
	NextScheduled  string       `json:"nextScheduledTime,omitempty"`
	Partitions     int32        `json:"partitions"`
	Groups         []GroupStats `json:"groups"`
	SampledSeconds float64      `json:"sampledSeconds,omitempty"`
}

// GroupStats is one group's backlog and, when sampled, its rates.
type GroupStats struct {
	Group              string   `json:"group"`
	Backlog            int64    `json:"backlog"` // messages not acknowledged yet (lag)
	InFlight           int64    `json:"inFlight"`
	Acked              int64    `json:"acked"`
	DeadLetters        int64    `json:"deadLetters"`
	OldestUnackedAge   string   `json:"oldestUnackedAge"`
	OldestUnackedAgeMs int64    `json:"oldestUnackedAgeMs"`
	LostMessages       int64    `json:"lostMessages,omitempty"`
	AckRate            *float64 `json:"ackRatePerSecond,omitempty"`
	ProduceRate        *float64 `json:"produceRatePerSecond,omitempty"`
}

func (a *app) queueStats() *cobra.Command {
	var sample time.Duration
	cmd := &cobra.Command{
		Use:               "stats QUEUE",
		Short:             "Messages stored, and per group the backlog (lag), in flight, dead letters, oldest unacked age; rates with --sample",
		Args:              exactArgs(1, "QUEUE"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			first, err := a.collectStats(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			stats := first
			if sample > 0 {
				select {
				case <-time.After(sample):
				case <-cmd.Context().Done():
					return cmd.Context().Err()
				}
				second, err := a.collectStats(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				secs := sample.Seconds()
				second.SampledSeconds = secs
				for i := range second.Groups {
					for _, g0 := range first.Groups {
						if g0.Group == second.Groups[i].Group {
							ack := float64(second.Groups[i].Acked-g0.Acked) / secs
							// Produced = what is stored now less before; retention may remove some meanwhile.
							prod := float64(second.Messages-first.Messages) / secs
							second.Groups[i].AckRate, second.Groups[i].ProduceRate = &ack, &prod
						}
					}
				}
				stats = second
			}
			return a.showValue(stats, func(t *tabwriter.Writer) {
				row(t, "QUEUE", "MESSAGES", "SCHEDULED", "PARTITIONS")
				row(t, stats.Queue, stats.Messages, stats.Scheduled, stats.Partitions)
				fmt.Fprintln(t)
				header := []any{"GROUP", "BACKLOG", "IN FLIGHT", "ACKED", "DEAD LETTERS", "OLDEST UNACKED"}
				if sample > 0 {
					header = append(header, "PRODUCED/S", "ACKED/S")
				}
				row(t, header...)
				for _, g := range stats.Groups {
					cells := []any{g.Group, g.Backlog, g.InFlight, g.Acked, g.DeadLetters, g.OldestUnackedAge}
					if g.AckRate != nil {
						cells = append(cells, fmt.Sprintf("%.1f", *g.ProduceRate), fmt.Sprintf("%.1f", *g.AckRate))
					}
					row(t, cells...)
				}
			})
		},
	}
	cmd.Flags().DurationVar(&sample, "sample", 0, "measure rates over this long (two readings of the counts)")
	return cmd
}

func (a *app) collectStats(parent context.Context, queue string) (*QueueStats, error) {
	ctx, cancel, err := a.call(parent)
	if err != nil {
		return nil, err
	}
	defer cancel()
	q, err := a.getQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	qs, _ := a.queues()
	groups, err := qs.ListConsumerGroups(ctx, &dmsv1.ListConsumerGroupsRequest{Parent: q.GetName()})
	if err != nil {
		return nil, err
	}
	out := &QueueStats{Queue: q.GetDisplayName(), ID: q.GetId(), Messages: q.GetMessageCount(), Scheduled: q.GetScheduledMessageCount(),
		NextScheduled: timeText(q.GetNextScheduledTime()), Partitions: q.GetPartitionCount(), Groups: []GroupStats{}}
	for _, g := range groups.GetGroups() {
		st := g.GetStats()
		age := st.GetOldestUnackedAge().AsDuration()
		out.Groups = append(out.Groups, GroupStats{
			Group: g.GetDisplayName(), Backlog: st.GetAvailableMessages(), InFlight: st.GetInFlightMessages(), Acked: st.GetConsumedMessages(),
			DeadLetters: st.GetAvailableDeadLetters(), OldestUnackedAge: durationText(age), OldestUnackedAgeMs: age.Milliseconds(), LostMessages: st.GetLostMessages(),
		})
	}
	return out, nil
}
