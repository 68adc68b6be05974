package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

var ackStatuses = map[string]dmsv1.AckStatus{
	"success": dmsv1.AckStatus_ACK_STATUS_SUCCESS, "fail": dmsv1.AckStatus_ACK_STATUS_FAIL, "redeliver": dmsv1.AckStatus_ACK_STATUS_REDELIVER,
}

func (a *app) consumeCommand() *cobra.Command {
	var (
		max              int
		wait, visibility time.Duration
		follow, noAck    bool
		ackAs, tagMatch  string
		tags             []string
	)
	cmd := &cobra.Command{
		Use:   "consume QUEUE GROUP",
		Short: "Receive messages as a member of a group, print them and ack them (unless --no-ack)",
		Long: `Receive up to --max messages for a consumer group, print each, then
acknowledge what was printed (--ack success, fail or redeliver; --no-ack
leaves them in flight until their visibility timeout, and prints their
receipt handles). It stops after --max messages, or when no message came
within --wait; --follow keeps waiting (tail). To read without consuming,
use dmsctl browse.`,
		Example: `  dmsctl consume orders billing --max 10
  dmsctl consume orders billing --follow -o json | jq .body
  dmsctl consume orders billing --max 1 --ack fail`,
		Args:              exactArgs(2, "QUEUE GROUP"),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			status, ok := ackStatuses[ackAs]
			if !ok {
				return usagef("--ack %q is not success, fail or redeliver", ackAs)
			}
			if max < 0 {
				return usagef("--max must be 0 (no limit, with --follow) or more, got %d", max)
			}
			if max == 0 && !follow {
				return usagef("--max 0 takes no limit only with --follow")
			}
			var filter *dmsv1.TagFilter
			if len(tags) > 0 {
				match, err := tagMatchOf(tagMatch)
				if err != nil {
					return err
				}
				filter = &dmsv1.TagFilter{Tags: tags, Match: match}
			}
			cs, err := a.consumerClient()
			if err != nil {
				return err
			}
			ctx, err := a.stream(cmd.Context())
			if err != nil {
				return err
			}
			group := a.groupName(args[0], args[1])
			printer := a.messagePrinter(false)
			got, failed := 0, 0
			for max == 0 || got < max {
				n := 1000
				if max > 0 {
					n = min(n, max-got)
				}
				rctx, cancel := context.WithTimeout(ctx, a.timeout+wait)
				resp, err := cs.ReceiveMessages(rctx, &dmsv1.ReceiveMessagesRequest{
					Group: group, MaxMessages: int32(n), WaitTime: durationpb.New(wait), VisibilityTimeout: durationpb.New(visibility), TagFilter: filter,
				})
				cancel()
				if err != nil {
					if cmd.Context().Err() != nil {
						break // interrupted: a tail ends here; what was printed was acked
					}
					return err
				}
				msgs := resp.GetMessages()
				if len(msgs) == 0 {
					if follow {
						continue
					}
					break
				}
				got += len(msgs)
				var acks []*dmsv1.Ack
				lines := make([]MessageLine, len(msgs))
				for i, m := range msgs {
					lines[i] = messageLine(m)
					if noAck {
						continue
					}
					lines[i].ReceiptHandle = ""
					acks = append(acks, &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle(), Status: status})
				}
				// Print, then ack what was printed: a message is never
				// acked unseen.
				for _, l := range lines {
					if err := printer.print(l); err != nil {
						return err
					}
				}
				if err := printer.flush(); err != nil {
					return err
				}
				var results []*dmsv1.AckResult
				if len(acks) > 0 {
					actx, cancel := context.WithTimeout(ctx, a.timeout)
					ar, err := cs.AckMessages(actx, &dmsv1.AckMessagesRequest{Group: group, Acks: acks})
					cancel()
					if err != nil {
						return err
					}
					results = ar.GetResults()
				}
				for i, r := range results {
					if !r.GetApplied() {
						failed++
						a.warnf("ack of %s not applied: %s (%s)", msgs[i].GetMessageId(), r.GetErrorMessage(), r.GetErrorReason())
					}
				}
			}
			if failed > 0 {
				return partialError{failed: failed, total: got}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&max, "max", 10, "stop after this many messages (0: no limit, with --follow)")
	f.DurationVar(&wait, "wait", time.Second, "how long each receive waits for a first message (up to 60s)")
	f.DurationVar(&visibility, "visibility", 30*time.Second, "how long received messages stay invisible to the group unless acked (15s to 300s)")
	f.BoolVar(&follow, "follow", false, "keep waiting for messages (tail the group)")
	f.BoolVar(&noAck, "no-ack", false, "do not acknowledge: messages come back after --visibility; their receipt handles are printed")
	f.StringVar(&ackAs, "ack", "success", "how to settle what was printed: success, fail or redeliver")
	f.StringArrayVar(&tags, "tag", nil, "receive only messages with these tags (the group keeps one filter); repeatable")
	f.StringVar(&tagMatch, "tag-match", "any", "any or all of --tag")
	_ = cmd.RegisterFlagCompletionFunc("ack", cobra.FixedCompletions([]string{"success", "fail", "redeliver"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

func tagMatchOf(s string) (dmsv1.TagMatch, error) {
	switch strings.ToLower(s) {
	case "", "any":
		return dmsv1.TagMatch_TAG_MATCH_ANY, nil
	case "all":
		return dmsv1.TagMatch_TAG_MATCH_ALL, nil
	}
	return 0, usagef("--tag-match %q is not any or all", s)
}

func (a *app) warnf(format string, args ...any) {
	_, _ = a.err.Write([]byte("dmsctl: " + sprintf(format, args...) + "\n"))
}
