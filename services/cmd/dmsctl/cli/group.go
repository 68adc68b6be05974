package cli

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

func (a *app) groupCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "group", Aliases: []string{"groups", "g"}, Short: "Create, list, describe, delete and seek consumer groups"}
	cmd.AddCommand(a.groupCreate(), a.groupList(), a.groupDescribe(), a.groupDelete(), a.groupSeek())
	return cmd
}

func (a *app) consumerClient() (dmsv1.ConsumerServiceClient, error) {
	conn, err := a.dial()
	if err != nil {
		return nil, err
	}
	return dmsv1.NewConsumerServiceClient(conn), nil
}

func groupTable(t *tabwriter.Writer, groups ...*dmsv1.ConsumerGroup) {
	row(t, "GROUP", "ID", "BACKLOG", "IN FLIGHT", "ACKED", "DEAD LETTERS", "OLDEST UNACKED", "TAG FILTER")
	for _, g := range groups {
		st := g.GetStats()
		filter := "-"
		if f := g.GetTagFilter(); len(f.GetTags()) > 0 {
			filter = strings.ToLower(strings.TrimPrefix(f.GetMatch().String(), "TAG_MATCH_")) + ":" + strings.Join(f.GetTags(), ",")
		}
		row(t, g.GetDisplayName(), g.GetId(), st.GetAvailableMessages(), st.GetInFlightMessages(), st.GetConsumedMessages(),
			st.GetAvailableDeadLetters(), durationText(st.GetOldestUnackedAge().AsDuration()), filter)
	}
}

func (a *app) groupCreate() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:               "create QUEUE GROUP",
		Short:             "Create a consumer group; it starts at the queue's earliest retained message",
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.CreateConsumerGroupRequest{Parent: a.queueName(args[0]), Group: &dmsv1.ConsumerGroup{DisplayName: args[1]}}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if dryRun {
				if _, err := a.getQueue(ctx, args[0]); err != nil {
					return err
				}
				return a.dryRun("create group", req)
			}
			qs, err := a.queues()
			if err != nil {
				return err
			}
			resp, err := qs.CreateConsumerGroup(ctx, req)
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) { groupTable(t, resp.GetGroup()) })
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the queue exists, print the request and change nothing")
	return cmd
}

func (a *app) groupList() *cobra.Command {
	return &cobra.Command{
		Use:               "list QUEUE",
		Aliases:           []string{"ls"},
		Short:             "List a queue's consumer groups with backlog, in flight and oldest unacked age",
		Args:              exactArgs(1, "QUEUE"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			qs, err := a.queues()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := qs.ListConsumerGroups(ctx, &dmsv1.ListConsumerGroupsRequest{Parent: a.queueName(args[0])})
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) { groupTable(t, resp.GetGroups()...) })
		},
	}
}

func (a *app) groupDescribe() *cobra.Command {
	return &cobra.Command{
		Use:               "describe QUEUE GROUP",
		Aliases:           []string{"get", "show"},
		Short:             "Show a consumer group and its counts",
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			qs, err := a.queues()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			resp, err := qs.GetConsumerGroup(ctx, &dmsv1.GetConsumerGroupRequest{Name: a.groupName(args[0], args[1])})
			if err != nil {
				return err
			}
			g, st := resp.GetGroup(), resp.GetGroup().GetStats()
			return a.show(resp, func(t *tabwriter.Writer) {
				row(t, "Group:", g.GetDisplayName())
				row(t, "ID:", g.GetId())
				row(t, "Resource:", g.GetName())
				row(t, "Created:", timeText(g.GetCreateTime()))
				row(t, "Messages in queue:", st.GetProducedMessages())
				row(t, "Backlog (not acked):", st.GetAvailableMessages())
				row(t, "In flight:", st.GetInFlightMessages())
				row(t, "Acked:", st.GetConsumedMessages())
				row(t, "Oldest unacked age:", durationText(st.GetOldestUnackedAge().AsDuration()))
				row(t, "Dead letters:", fmt.Sprintf("%d available of %d", st.GetAvailableDeadLetters(), st.GetProducedDeadLetters()))
				if st.GetLostMessages() > 0 {
					row(t, "Lost (damaged on disk):", st.GetLostMessages())
				}
				if f := g.GetTagFilter(); len(f.GetTags()) > 0 {
					row(t, "Tag filter:", strings.ToLower(strings.TrimPrefix(f.GetMatch().String(), "TAG_MATCH_"))+": "+strings.Join(f.GetTags(), ", "))
				}
			})
		},
	}
}

func (a *app) groupDelete() *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:               "delete QUEUE GROUP",
		Aliases:           []string{"rm"},
		Short:             "Delete a consumer group and its consumption state",
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.DeleteConsumerGroupRequest{Name: a.groupName(args[0], args[1])}
			qs, err := a.queues()
			if err != nil {
				return err
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if dryRun {
				if _, err := qs.GetConsumerGroup(ctx, &dmsv1.GetConsumerGroupRequest{Name: req.GetName()}); err != nil {
					return err
				}
				return a.dryRun("delete group", req)
			}
			resp, err := qs.DeleteConsumerGroup(ctx, req)
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) { row(t, "deleted", args[0]+"/"+args[1]) })
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the group exists, print the request and change nothing")
	return cmd
}

func (a *app) groupSeek() *cobra.Command {
	var (
		to     string
		dryRun bool
	)
	cmd := &cobra.Command{
		Use:   "seek QUEUE GROUP --to earliest|latest|TIME|PARTITION:OFFSET[,...]",
		Short: "Move a group's position: to the earliest or latest message, a time, or offsets per partition",
		Long: `Move a consumer group's position. Messages from the new position on are
delivered again, even if they were acknowledged.

  --to earliest                 the earliest retained message of every partition
  --to latest                   after the last message stored so far
  --to 2026-01-02T15:04:05Z     the first message stored at or after a time
  --to 1h                       ...or that long ago
  --to 0:120,1:98               explicit offsets per partition (others keep theirs)`,
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &dmsv1.SeekConsumerGroupRequest{Group: a.groupName(args[0], args[1])}
			switch {
			case to == "":
				return usagef("--to is required: earliest, latest, a time, or PARTITION:OFFSET pairs")
			case to == "earliest":
				req.Target = &dmsv1.SeekConsumerGroupRequest_Position{Position: dmsv1.SeekPosition_SEEK_POSITION_EARLIEST}
			case to == "latest":
				req.Target = &dmsv1.SeekConsumerGroupRequest_Position{Position: dmsv1.SeekPosition_SEEK_POSITION_LATEST}
			case strings.Contains(to, ":") && !strings.Contains(to, "T"):
				offs := &dmsv1.PartitionOffsets{}
				for _, pair := range strings.Split(to, ",") {
					ps, os, _ := strings.Cut(pair, ":")
					p, err1 := strconv.ParseInt(ps, 10, 32)
					o, err2 := strconv.ParseInt(os, 10, 64)
					if err1 != nil || err2 != nil {
						return usagef("--to %q: offsets are written PARTITION:OFFSET[,PARTITION:OFFSET...]", to)
					}
					offs.Offsets = append(offs.Offsets, &dmsv1.PartitionOffset{Partition: int32(p), Offset: o})
				}
				req.Target = &dmsv1.SeekConsumerGroupRequest_Offsets{Offsets: offs}
			default:
				ts, err := parseTime(to)
				if err != nil {
					return err
				}
				req.Target = &dmsv1.SeekConsumerGroupRequest_Time{Time: ts}
			}
			ctx, cancel, err := a.call(cmd.Context())
			if err != nil {
				return err
			}
			defer cancel()
			if dryRun {
				qs, err := a.queues()
				if err != nil {
					return err
				}
				if _, err := qs.GetConsumerGroup(ctx, &dmsv1.GetConsumerGroupRequest{Name: req.GetGroup()}); err != nil {
					return err
				}
				return a.dryRun("seek group", req)
			}
			cs, err := a.consumerClient()
			if err != nil {
				return err
			}
			resp, err := cs.SeekConsumerGroup(ctx, req)
			if err != nil {
				return err
			}
			return a.show(resp, func(t *tabwriter.Writer) {
				row(t, "PARTITION", "POSITION")
				for _, p := range resp.GetPositions() {
					row(t, p.GetPartition(), p.GetOffset())
				}
			})
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "earliest, latest, a time (RFC 3339, Unix seconds, or an age such as 1h) or PARTITION:OFFSET[,...]")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "check the group exists, print the request and change nothing")
	return cmd
}
