package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

func (a *app) traceCommand() *cobra.Command {
	var (
		queue, key, group, since, until string
		max                             int32
	)
	cmd := &cobra.Command{
		Use:   "trace [MESSAGE_ID] --queue QUEUE",
		Short: "A message's whole life: produced, stored, each delivery and outcome, dead-lettered, redriven, acked",
		Long: `Show the lifecycle trace of a message (by id), or of the messages of an
ordering key or a time range of the queue: who produced it through which
API, where it was stored, every delivery attempt and its outcome per group,
dead-lettering, redrives and the final ack.`,
		Example: `  dmsctl trace 0b6c2f1e-... --queue orders
  dmsctl trace --queue orders --key customer-42 --since 1h -o json`,
		Args:              cobra.MaximumNArgs(1),
		ValidArgsFunction: cobra.NoFileCompletions,
		RunE: func(cmd *cobra.Command, args []string) error {
			if queue == "" {
				return usagef("--queue is required: a trace is looked up in its queue")
			}
			req := &dmsv1.GetMessageTraceRequest{Queue: a.queueName(queue), OrderingKey: key, MaxMessages: max}
			if len(args) == 1 {
				req.MessageId = args[0]
			}
			if group != "" {
				req.Group = a.groupName(queue, group)
			}
			var err error
			if req.StartTime, err = parseTime(since); err != nil {
				return err
			}
			if req.EndTime, err = parseTime(until); err != nil {
				return err
			}
			if req.MessageId == "" && key == "" && req.StartTime == nil {
				return usagef("give a MESSAGE_ID, --key or --since")
			}
			conn, err := a.dial()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := dmsv1.NewMessageTraceServiceClient(conn).GetMessageTrace(ctx, req)
			if err != nil {
				return err
			}
			if len(resp.GetTraces()) == 0 && req.GetMessageId() != "" {
				return notFoundf("no trace of message %s in queue %s", req.GetMessageId(), queue)
			}
			return a.show(resp, func(t *tabwriter.Writer) {
				for i, tr := range resp.GetTraces() {
					if i > 0 {
						fmt.Fprintln(t)
					}
					row(t, "Message:", tr.GetMessageId())
					row(t, "Stored:", fmt.Sprintf("partition %d, offset %d, at %s", tr.GetPartition(), tr.GetOffset(), timeText(tr.GetPublishTime())))
					row(t, "Producer:", fmt.Sprintf("%s via %s", orDash(tr.GetProducer()), orDash(tr.GetFrontEnd())))
					if st := tr.GetStorage(); st != nil {
						row(t, "Replicas:", fmt.Sprintf("%s (in sync: %s; leader %s; committed %v)", strings.Join(st.GetReplicas(), ","), strings.Join(st.GetInSyncReplicas(), ","), orDash(st.GetLeader()), st.GetCommitted()))
					}
					if tc := tr.GetTraceContext(); tc.GetTraceId() != "" {
						row(t, "Trace context:", tc.GetTraceparent())
					}
					groupNames := map[string]string{}
					for _, g := range tr.GetGroups() {
						groupNames[lastSegment(g.GetGroup())] = g.GetDisplayName()
						row(t, "Group "+g.GetDisplayName()+":", fmt.Sprintf("%s after %d deliveries", strings.ToLower(strings.TrimPrefix(g.GetStatus().String(), "GROUP_TRACE_STATUS_")), g.GetDeliveryCount()))
					}
					row(t, "TIME", "EVENT", "GROUP", "CONSUMER", "DELIVERY", "REASON / DETAIL")
					for _, e := range tr.GetEvents() {
						detail := e.GetReason()
						if e.GetDetail() != "" {
							detail = strings.TrimSpace(detail + " " + e.GetDetail())
						}
						row(t, timeText(e.GetTime()), strings.ToLower(strings.TrimPrefix(e.GetType().String(), "MESSAGE_TRACE_EVENT_TYPE_")), orDash(groupText(groupNames, e.GetGroup())),
							orDash(e.GetConsumer()), e.GetDeliveryCount(), orDash(detail))
					}
				}
				if resp.GetTruncated() {
					row(t, "(more traces match; narrow the query)")
				}
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&queue, "queue", "", "the queue of the message (required)")
	f.StringVar(&key, "key", "", "the messages of this ordering key")
	f.StringVar(&group, "group", "", "only this group's events")
	f.StringVar(&since, "since", "", "messages stored from this time (RFC 3339, Unix seconds, or an age such as 1h)")
	f.StringVar(&until, "until", "", "messages stored before this time")
	f.Int32Var(&max, "max", 0, "at most this many messages (0: the server's default)")
	_ = cmd.RegisterFlagCompletionFunc("queue", a.completeQueues)
	return cmd
}

// groupText names a group by its display name when the trace gives it.
func groupText(names map[string]string, group string) string {
	if n, ok := names[lastSegment(group)]; ok && n != "" {
		return n
	}
	return lastSegment(group)
}

func lastSegment(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}
