package cli

import (
	"github.com/spf13/cobra"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// filterFlags are the message filters browse and dlq share.
type filterFlags struct {
	ids, tags, attrs []string
	tagMatch         string
	since, until     string
}

func (f *filterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVar(&f.ids, "id", nil, "only this message id; repeatable")
	fl.StringArrayVar(&f.tags, "tag", nil, "only messages with this tag; repeatable (see --tag-match)")
	fl.StringVar(&f.tagMatch, "tag-match", "any", "any or all of --tag")
	fl.StringArrayVar(&f.attrs, "attr", nil, "only messages with this attribute: name=value, or name for any value; repeatable")
	fl.StringVar(&f.since, "since", "", "from this time: RFC 3339, Unix seconds, or an age such as 15m")
	fl.StringVar(&f.until, "until", "", "before this time, same forms as --since")
}

func (f *filterFlags) tagFilter() (*dmsv1.TagFilter, error) {
	if len(f.tags) == 0 {
		return nil, nil
	}
	m, err := tagMatchOf(f.tagMatch)
	if err != nil {
		return nil, err
	}
	return &dmsv1.TagFilter{Tags: f.tags, Match: m}, nil
}

func (a *app) browseCommand() *cobra.Command {
	var (
		filters    filterFlags
		partitions []int32
		offset     int64
		limit      int
	)
	cmd := &cobra.Command{
		Use:   "browse QUEUE",
		Short: "Read a queue's messages without consuming them: by partition and offset, by time, by tag, attribute or id",
		Long: `Read messages without consuming them: no group's position, in-flight set
or counts change. Start at --offset (in each --partition, default all) or at
--since (through the partitions' time indexes); keep the messages matching
every filter; stop after --limit messages, oldest first across partitions.`,
		Example: `  dmsctl browse orders --partition 0 --offset 120 --limit 5
  dmsctl browse orders --since 15m --tag urgent -o json
  dmsctl browse orders --attr region=eu --id 5c0e...`,
		Args:              exactArgs(1, "QUEUE"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 {
				return usagef("--limit must be 1 or more, got %d", limit)
			}
			tf, err := filters.tagFilter()
			if err != nil {
				return err
			}
			since, err := parseTime(filters.since)
			if err != nil {
				return err
			}
			until, err := parseTime(filters.until)
			if err != nil {
				return err
			}
			qs, err := a.queues()
			if err != nil {
				return err
			}
			req := &dmsv1.BrowseMessagesRequest{
				Queue: a.queueName(args[0]), Partitions: partitions, Offset: offset, StartTime: since, EndTime: until,
				TagFilter: tf, Attributes: filters.attrs, MessageIds: filters.ids,
			}
			printer := a.messagePrinter(false)
			for left := limit; left > 0; {
				req.Limit = int32(min(left, 1000))
				ctx, cancel, err := a.call(cmd.Context())
				if err != nil {
					return err
				}
				resp, err := qs.BrowseMessages(ctx, req)
				cancel()
				if err != nil {
					return err
				}
				for _, m := range resp.GetMessages() {
					if err := printer.print(messageLine(m)); err != nil {
						return err
					}
				}
				if err := printer.flush(); err != nil {
					return err
				}
				left -= len(resp.GetMessages())
				if resp.GetNextPageToken() == "" {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			if printer.n == 0 && a.ctx.Output == "table" {
				a.warnf("no message matched")
			}
			return nil
		},
	}
	filters.register(cmd)
	f := cmd.Flags()
	f.Int32SliceVarP(&partitions, "partition", "p", nil, "read only these partitions (default all); repeatable or comma-separated")
	f.Int64Var(&offset, "offset", 0, "start at this offset in each partition read")
	f.IntVar(&limit, "limit", 100, "stop after this many messages")
	return cmd
}
