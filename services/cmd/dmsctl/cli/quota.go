package cli

import (
	"context"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

func (a *app) quotaCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "quota", Aliases: []string{"quotas"}, Short: "The project's quotas: queues, groups, message size, send rates, stored bytes"}
	cmd.AddCommand(&cobra.Command{
		Use: "get", Short: "Show the quotas in force and which are the project's own", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.unary(cmd, "", nil, false, func(ctx context.Context, c *grpc.ClientConn) (proto.Message, error) {
				return dmsv1.NewQueueServiceClient(c).GetProjectQuotas(ctx, &dmsv1.GetProjectQuotasRequest{Name: a.projectName()})
			}, func(m proto.Message, t *tabwriter.Writer) {
				r := m.(*dmsv1.GetProjectQuotasResponse)
				q := r.GetQuotas()
				own := func(field string) string {
					if slices.Contains(r.GetProjectSet(), field) {
						return "project"
					}
					return "default"
				}
				row(t, "QUOTA", "VALUE", "SET BY")
				row(t, "max queues", q.GetMaxQueues(), own("max_queues"))
				row(t, "max groups per queue", q.GetMaxGroupsPerQueue(), own("max_groups_per_queue"))
				row(t, "max message bytes", q.GetMaxMessageBytes(), own("max_message_bytes"))
				row(t, "send messages/s", q.GetSendMessagesPerSecond(), own("send_messages_per_second"))
				row(t, "send bytes/s", q.GetSendBytesPerSecond(), own("send_bytes_per_second"))
				row(t, "max stored bytes", q.GetMaxStoredBytes(), own("max_stored_bytes"))
				row(t, "queues used", r.GetQueuesUsed(), "")
			})
		},
	})
	var (
		q   dmsv1.ProjectQuotas
		dry bool
	)
	set := &cobra.Command{
		Use:   "set",
		Short: "Set the project's quotas (the operator's administrators); flags not given keep their value, 0 means the default",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if f.NFlag() == 0 || (f.NFlag() == 1 && dry) {
				return usagef("give at least one quota flag")
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
			qs := dmsv1.NewQueueServiceClient(conn)
			// UpdateProjectQuotas replaces every field: start from the
			// project's own values so that flags not given keep theirs.
			cur, err := qs.GetProjectQuotas(ctx, &dmsv1.GetProjectQuotasRequest{Name: a.projectName()})
			if err != nil {
				return err
			}
			next := &dmsv1.ProjectQuotas{}
			own := cur.GetProjectSet()
			cq := cur.GetQuotas()
			for field, apply := range map[string]func(){
				"max_queues":               func() { next.MaxQueues = cq.GetMaxQueues() },
				"max_groups_per_queue":     func() { next.MaxGroupsPerQueue = cq.GetMaxGroupsPerQueue() },
				"max_message_bytes":        func() { next.MaxMessageBytes = cq.GetMaxMessageBytes() },
				"send_messages_per_second": func() { next.SendMessagesPerSecond = cq.GetSendMessagesPerSecond() },
				"send_bytes_per_second":    func() { next.SendBytesPerSecond = cq.GetSendBytesPerSecond() },
				"max_stored_bytes":         func() { next.MaxStoredBytes = cq.GetMaxStoredBytes() },
			} {
				if slices.Contains(own, field) {
					apply()
				}
			}
			for flag, apply := range map[string]func(){
				"max-queues":           func() { next.MaxQueues = q.MaxQueues },
				"max-groups-per-queue": func() { next.MaxGroupsPerQueue = q.MaxGroupsPerQueue },
				"max-message-bytes":    func() { next.MaxMessageBytes = q.MaxMessageBytes },
				"send-messages-per-s":  func() { next.SendMessagesPerSecond = q.SendMessagesPerSecond },
				"send-bytes-per-s":     func() { next.SendBytesPerSecond = q.SendBytesPerSecond },
				"max-stored-bytes":     func() { next.MaxStoredBytes = q.MaxStoredBytes },
			} {
				if f.Changed(flag) {
					apply()
				}
			}
			req := &dmsv1.UpdateProjectQuotasRequest{Name: a.projectName(), Quotas: next}
			if dry {
				return a.dryRun("update project quotas", req)
			}
			resp, err := qs.UpdateProjectQuotas(ctx, req)
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) {
				r := resp.GetQuotas()
				row(t, "MAX QUEUES", "GROUPS/QUEUE", "MESSAGE BYTES", "MSGS/S", "BYTES/S", "STORED BYTES")
				row(t, r.GetMaxQueues(), r.GetMaxGroupsPerQueue(), r.GetMaxMessageBytes(), r.GetSendMessagesPerSecond(), r.GetSendBytesPerSecond(), r.GetMaxStoredBytes())
			})
		},
	}
	set.PreRunE = func(*cobra.Command, []string) error {
		a.unscoped = true // the operator's action: an unscoped login
		return nil
	}
	f := set.Flags()
	f.Int32Var(&q.MaxQueues, "max-queues", 0, "queues the project may have")
	f.Int32Var(&q.MaxGroupsPerQueue, "max-groups-per-queue", 0, "consumer groups per queue")
	f.Int32Var(&q.MaxMessageBytes, "max-message-bytes", 0, "largest message in bytes")
	f.Int64Var(&q.SendMessagesPerSecond, "send-messages-per-s", 0, "messages per second the project may send")
	f.Int64Var(&q.SendBytesPerSecond, "send-bytes-per-s", 0, "bytes per second the project may send")
	f.Int64Var(&q.MaxStoredBytes, "max-stored-bytes", 0, "bytes the project's partitions may hold")
	f.BoolVar(&dry, "dry-run", false, "print the request and change nothing")
	cmd.AddCommand(set)
	return cmd
}
