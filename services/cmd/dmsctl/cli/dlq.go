package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

func (a *app) dlqCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "dlq", Aliases: []string{"deadletters"}, Short: "List, show and redrive a group's dead letters"}
	cmd.AddCommand(a.dlqList(), a.dlqShow(), a.dlqRedrive())
	return cmd
}

type dlqFilters struct {
	filterFlags
	reason string
}

func (f *dlqFilters) register(cmd *cobra.Command) {
	f.filterFlags.register(cmd)
	cmd.Flags().StringVar(&f.reason, "reason", "", "only dead letters whose last failure was FAILED_BY_CONSUMER, VISIBILITY_TIMEOUT or REDELIVER_REQUESTED")
	_ = cmd.RegisterFlagCompletionFunc("reason", cobra.FixedCompletions([]string{"FAILED_BY_CONSUMER", "VISIBILITY_TIMEOUT", "REDELIVER_REQUESTED"}, cobra.ShellCompDirectiveNoFileComp))
}

// listDeadLetters pages through ListDeadLetters until limit dead letters
// matched or the dead-letter queue ends.
func (a *app) listDeadLetters(parent context.Context, group string, f *dlqFilters, limit int, each func(*dmsv1.ReceivedMessage) error) error {
	tf, err := f.tagFilter()
	if err != nil {
		return err
	}
	since, err := parseTime(f.since)
	if err != nil {
		return err
	}
	until, err := parseTime(f.until)
	if err != nil {
		return err
	}
	cs, err := a.consumerClient()
	if err != nil {
		return err
	}
	req := &dmsv1.ListDeadLettersRequest{Group: group, MessageIds: f.ids, TagFilter: tf, Attributes: f.attrs, StartTime: since, EndTime: until, FailureReason: f.reason}
	for left := limit; left > 0; {
		req.Limit = int32(min(left, 1000))
		ctx, cancel, err := a.call(parent)
		if err != nil {
			return err
		}
		resp, err := cs.ListDeadLetters(ctx, req)
		cancel()
		if err != nil {
			return err
		}
		for _, m := range resp.GetMessages() {
			if err := each(m); err != nil {
				return err
			}
		}
		left -= len(resp.GetMessages())
		if resp.GetNextPageToken() == "" {
			return nil
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return nil
}

func (a *app) dlqList() *cobra.Command {
	var (
		filters dlqFilters
		limit   int
	)
	cmd := &cobra.Command{
		Use:               "list QUEUE GROUP",
		Aliases:           []string{"ls"},
		Short:             "List a group's dead letters without receiving them, filtered by id, tag, attribute, time or failure reason",
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			printer := a.messagePrinter(true)
			err := a.listDeadLetters(cmd.Context(), a.groupName(args[0], args[1]), &filters, limit, func(m *dmsv1.ReceivedMessage) error {
				return printer.print(messageLine(m))
			})
			if ferr := printer.flush(); err == nil {
				err = ferr
			}
			if err == nil && printer.n == 0 && a.ctx.Output == "table" {
				a.warnf("no dead letter matched")
			}
			return err
		},
	}
	filters.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", 100, "stop after this many dead letters")
	return cmd
}

func (a *app) dlqShow() *cobra.Command {
	return &cobra.Command{
		Use:               "show QUEUE GROUP MESSAGE_ID",
		Short:             "Show one dead letter: why it failed, where it came from, its whole body",
		Args:              exactArgs(3, "QUEUE GROUP MESSAGE_ID"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			var found *dmsv1.ReceivedMessage
			f := &dlqFilters{filterFlags: filterFlags{ids: []string{args[2]}}}
			err := a.listDeadLetters(cmd.Context(), a.groupName(args[0], args[1]), f, 1, func(m *dmsv1.ReceivedMessage) error {
				found = m
				return nil
			})
			if err != nil {
				return err
			}
			if found == nil {
				return notFoundf("no dead letter %s in group %s of queue %s", args[2], args[1], args[0])
			}
			line := messageLine(found)
			return a.showValue(line, func(t *tabwriter.Writer) {
				d := line.DeadLetter
				row(t, "Message ID:", line.ID)
				row(t, "Failures:", d.FailureCount)
				row(t, "Last failure:", d.LastFailureReason)
				row(t, "Dead letter since:", d.DeadLetterTime)
				row(t, "From:", fmt.Sprintf("partition %d, offset %d", d.SourcePartition, d.SourceOffset))
				row(t, "Tags:", fmt.Sprint(line.Tags))
				if len(line.Attributes) > 0 {
					b, _ := json.Marshal(line.Attributes)
					row(t, "Attributes:", string(b))
				}
				if line.OrderingKey != "" {
					row(t, "Ordering key:", line.OrderingKey)
				}
				if line.Body != nil {
					row(t, "Body:", *line.Body)
				} else {
					row(t, "Body (base64):", line.BodyBase64)
				}
			})
		},
	}
}

// RedriveLine is the result for one dead letter of a redrive.
type RedriveLine struct {
	ID           string `json:"id"`
	Redriven     bool   `json:"redriven"`
	DryRun       bool   `json:"dryRun,omitempty"`
	ErrorReason  string `json:"errorReason,omitempty"`
	ErrorMessage string `json:"errorMessage,omitempty"`
}

func (a *app) dlqRedrive() *cobra.Command {
	var (
		filters   dlqFilters
		limit     int
		perSecond int32
		dryRun    bool
	)
	cmd := &cobra.Command{
		Use:   "redrive QUEUE GROUP",
		Short: "Give dead letters back to their group, with a result per message",
		Long: `Redrive the dead letters that match every filter (all of them without
filters, up to --limit): each leaves the dead-letter queue and its message
becomes available to the group again with a fresh delivery count. Other
groups are not affected. --rate limits redrives per second on the server.
One result is printed per dead letter; the exit code is 6 when any failed
(a message past the queue's retention, say). --dry-run lists what would be
redriven and changes nothing.`,
		Example: `  dmsctl dlq redrive orders billing --reason VISIBILITY_TIMEOUT --since 1h --dry-run
  dmsctl dlq redrive orders billing --tag retryable --rate 100 -o json`,
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			if limit < 1 || perSecond < 0 {
				return usagef("--limit must be 1 or more and --rate 0 or more")
			}
			group := a.groupName(args[0], args[1])
			// The server redrives by id and tags; the other filters
			// (attributes, time, reason) choose the ids here, from the same
			// listing dlq list shows.
			var ids []string
			if err := a.listDeadLetters(cmd.Context(), group, &filters, limit, func(m *dmsv1.ReceivedMessage) error {
				ids = append(ids, m.GetMessageId())
				return nil
			}); err != nil {
				return err
			}
			printer, flushRows := a.redrivePrinter()
			defer flushRows()
			if len(ids) == 0 {
				if a.ctx.Output == "table" {
					a.warnf("no dead letter matched; nothing redriven")
				}
				return nil
			}
			if dryRun {
				for _, id := range ids {
					if err := printer(RedriveLine{ID: id, DryRun: true}); err != nil {
						return err
					}
				}
				if a.ctx.Output == "table" {
					a.warnf("dry run: %d dead letters would be redriven; nothing changed", len(ids))
				}
				return nil
			}
			cs, err := a.consumerClient()
			if err != nil {
				return err
			}
			ctx, err := a.stream(cmd.Context())
			if err != nil {
				return err
			}
			bar := a.newProgress("redrive", int64(len(ids)))
			defer bar.finish()
			failed := 0
			for start := 0; start < len(ids); start += 1000 {
				chunk := ids[start:min(start+1000, len(ids))]
				resp, err := cs.RedriveDeadLetters(ctx, &dmsv1.RedriveDeadLettersRequest{Group: group, MessageIds: chunk, MaxPerSecond: perSecond, Limit: int32(len(chunk))})
				if err != nil {
					return err
				}
				seen := map[string]bool{}
				for _, r := range resp.GetResults() {
					seen[r.GetMessageId()] = true
					line := RedriveLine{ID: r.GetMessageId(), Redriven: r.GetRedriven(), ErrorReason: r.GetErrorReason(), ErrorMessage: r.GetErrorMessage()}
					if !line.Redriven {
						failed++
					}
					if err := printer(line); err != nil {
						return err
					}
				}
				// A dead letter settled by someone else between the listing
				// and the redrive has no result: say so.
				for _, id := range chunk {
					if !seen[id] {
						failed++
						if err := printer(RedriveLine{ID: id, ErrorReason: "DEAD_LETTER_GONE", ErrorMessage: "no longer in the dead-letter queue (acknowledged or redriven meanwhile)"}); err != nil {
							return err
						}
					}
				}
				bar.add(len(chunk)-0, 0)
			}
			if failed > 0 {
				return partialError{failed: failed, total: len(ids)}
			}
			return nil
		},
	}
	filters.register(cmd)
	f := cmd.Flags()
	f.IntVar(&limit, "limit", 1000, "redrive at most this many")
	f.Int32Var(&perSecond, "rate", 0, "at most this many redrives per second (0: the server's 1000)")
	f.BoolVar(&dryRun, "dry-run", false, "list what would be redriven and change nothing")
	return cmd
}

// redrivePrinter prints redrive results; flush writes the table rows still
// buffered.
func (a *app) redrivePrinter() (print func(RedriveLine) error, flush func()) {
	t := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	n := 0
	return func(l RedriveLine) error {
		n++
		switch a.ctx.Output {
		case "json":
			b, _ := json.Marshal(l)
			_, err := fmt.Fprintln(a.out, string(b))
			return err
		case "yaml":
			b, _ := json.Marshal(l)
			if n > 1 {
				fmt.Fprintln(a.out, "---")
			}
			return writeYAML(a.out, b)
		}
		if n == 1 {
			row(t, "ID", "RESULT", "REASON")
		}
		result := "redriven"
		switch {
		case l.DryRun:
			result = "would redrive"
		case !l.Redriven:
			result = "failed: " + l.ErrorMessage
		}
		row(t, l.ID, result, orDash(l.ErrorReason))
		if n%100 == 0 {
			return t.Flush()
		}
		return nil
	}, func() { _ = t.Flush() }
}
