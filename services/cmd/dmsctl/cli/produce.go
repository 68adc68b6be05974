package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/time/rate"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// maxLineBytes is the longest line produce reads: a whole message (512 KiB)
// and then some, so that an oversized message reaches the server and gets
// its exact refusal rather than a scanner error.
const maxLineBytes = 1 << 20

// SendLine is what produce prints for each message sent, with -o json (one
// object per line) or yaml.
type SendLine struct {
	ID          string `json:"id"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	ScheduleID  string `json:"scheduleId,omitempty"`
	DeliverTime string `json:"deliverTime,omitempty"`
}

// parseAttributes reads --attr values: name=value (a string), or
// name:int=5, name:double=1.5, name:bool=true.
func parseAttributes(in []string) (map[string]*dmsv1.AttributeValue, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := map[string]*dmsv1.AttributeValue{}
	for _, a := range in {
		key, value, ok := strings.Cut(a, "=")
		if !ok || key == "" {
			return nil, usagef("--attr %q: write name=value, or name:int=5, name:double=1.5, name:bool=true", a)
		}
		name, typ, typed := strings.Cut(key, ":")
		var v *dmsv1.AttributeValue
		switch {
		case !typed || typ == "string":
			v = &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_StringValue{StringValue: value}}
		case typ == "int":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return nil, usagef("--attr %q: %q is not an int", a, value)
			}
			v = &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_IntValue{IntValue: n}}
		case typ == "double":
			n, err := strconv.ParseFloat(value, 64)
			if err != nil {
				return nil, usagef("--attr %q: %q is not a number", a, value)
			}
			v = &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: n}}
		case typ == "bool":
			b, err := strconv.ParseBool(value)
			if err != nil {
				return nil, usagef("--attr %q: %q is not true or false", a, value)
			}
			v = &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: b}}
		default:
			return nil, usagef("--attr %q: type %q is not string, int, double or bool", a, typ)
		}
		out[name] = v
	}
	return out, nil
}

func (a *app) produceCommand() *cobra.Command {
	var (
		attrs, tags        []string
		key, file, deliver string
		delay              time.Duration
		perSecond          float64
		batch              int
		dryRun, quiet      bool
	)
	cmd := &cobra.Command{
		Use:   "produce QUEUE [BODY...]",
		Short: "Send messages: the BODY arguments, else one message per line of --file or of stdin",
		Long: `Send messages to a queue. Each BODY argument is one message; without any,
each line of --file (or of stdin) is one. Every message gets the same
attributes, tags, ordering key and delay. Messages go in batches of --batch,
each answered once stored durably; --rate limits messages per second. A
progress bar is drawn on a terminal. One result is printed per message (its
id, partition and offset): a table, or with -o json one object per line.`,
		Example: `  dmsctl produce orders '{"id":1}' '{"id":2}' --attr region=eu --attr n:int=5 --tag new
  seq 1 100000 | dmsctl produce orders --rate 5000 --batch 500 -o json > sent.jsonl
  dmsctl produce orders --file messages.txt --delay 10m`,
		Args:              cobra.MinimumNArgs(1),
		ValidArgsFunction: a.completeQueues,
		RunE: func(cmd *cobra.Command, args []string) error {
			if batch < 1 || batch > 1000 {
				return usagef("--batch must be 1 to 1000, got %d", batch)
			}
			attributes, err := parseAttributes(attrs)
			if err != nil {
				return err
			}
			deliverAt, err := parseFutureTime(deliver)
			if err != nil {
				return err
			}
			template := &dmsv1.Message{Attributes: attributes, Tags: tags, OrderingKey: key}
			if delay > 0 {
				template.Delay = durationpb.New(delay)
			}
			if deliverAt != nil {
				template.DeliverTime = deliverAt
			}
			var src io.Reader
			switch {
			case len(args) > 1:
				if file != "" {
					return usagef("give message bodies as arguments or --file, not both")
				}
			case file != "":
				f, err := os.Open(file)
				if err != nil {
					return usagef("--file: %v", err)
				}
				defer f.Close()
				src = f
			default:
				src = a.in
			}
			next := bodySource(args[1:], src)
			queue := a.queueName(args[0])
			ctx, err := a.stream(cmd.Context())
			if err != nil {
				return err
			}
			var limiter *rate.Limiter
			if perSecond > 0 {
				// Batches no larger than a second's worth, so that a low
				// rate flows instead of coming in bursts.
				batch = max(1, min(batch, int(perSecond)))
				limiter = rate.NewLimiter(rate.Limit(perSecond), batch)
			}
			var total int64
			if len(args) > 1 {
				total = int64(len(args) - 1)
			}
			bar := a.newProgress("produce", total)
			defer bar.finish()
			var (
				prod   dmsv1.ProducerServiceClient
				t      = tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				sent   int
				header bool
			)
			if !dryRun {
				conn, err := a.dial()
				if err != nil {
					return err
				}
				prod = dmsv1.NewProducerServiceClient(conn)
			}
			for {
				var msgs []*dmsv1.Message
				for len(msgs) < batch {
					body, ok, err := next()
					if err != nil {
						return err
					}
					if !ok {
						break
					}
					m := &dmsv1.Message{Body: body, Attributes: template.Attributes, Tags: template.Tags, OrderingKey: template.OrderingKey,
						Delay: template.Delay, DeliverTime: template.DeliverTime}
					msgs = append(msgs, m)
				}
				if len(msgs) == 0 {
					break
				}
				req := &dmsv1.SendMessagesRequest{Queue: queue, Messages: msgs}
				if dryRun {
					sent += len(msgs)
					if sent == len(msgs) {
						if err := a.dryRun(fmt.Sprintf("send in batches of %d; first batch", batch), req); err != nil {
							return err
						}
					}
					continue
				}
				if limiter != nil {
					if err := limiter.WaitN(ctx, len(msgs)); err != nil {
						return err
					}
				}
				cctx, cancel := context.WithTimeout(ctx, a.timeout)
				resp, err := prod.SendMessages(cctx, req)
				cancel()
				if err != nil {
					bar.add(0, len(msgs))
					if sent > 0 {
						fmt.Fprintf(a.err, "dmsctl: %d messages were sent before this failure\n", sent)
					}
					return err
				}
				sent += len(msgs)
				bar.add(len(msgs), 0)
				if quiet {
					continue
				}
				for _, r := range resp.GetResults() {
					line := SendLine{ID: r.GetMessageId(), Partition: r.GetPartition(), Offset: r.GetOffset(), ScheduleID: r.GetScheduleId(), DeliverTime: timeText(r.GetDeliverTime())}
					switch a.ctx.Output {
					case "json":
						b, _ := json.Marshal(line)
						fmt.Fprintln(a.out, string(b))
					case "yaml":
						b, _ := json.Marshal(line)
						if header {
							fmt.Fprintln(a.out, "---")
						}
						header = true
						if err := writeYAML(a.out, b); err != nil {
							return err
						}
					default:
						if !header {
							header = true
							row(t, "ID", "PARTITION", "OFFSET", "SCHEDULE ID", "DELIVER AT")
						}
						row(t, line.ID, line.Partition, line.Offset, orDash(line.ScheduleID), orDash(line.DeliverTime))
					}
				}
				_ = t.Flush()
			}
			if dryRun {
				fmt.Fprintf(a.err, "dry run: %d messages read, none sent\n", sent)
			} else if a.ctx.Output == "table" {
				fmt.Fprintf(a.err, "%d messages sent\n", sent)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&attrs, "attr", nil, "attribute name=value (or name:int=5, name:double=1.5, name:bool=true); repeatable")
	f.StringArrayVar(&tags, "tag", nil, "tag (up to 3); repeatable")
	f.StringVar(&key, "key", "", "ordering key")
	f.DurationVar(&delay, "delay", 0, "deliver this long after sending (up to 7 days)")
	f.StringVar(&deliver, "deliver-at", "", "deliver at this time (RFC 3339 or Unix seconds)")
	f.StringVarP(&file, "file", "f", "", "read messages from this file, one per line")
	f.Float64Var(&perSecond, "rate", 0, "at most this many messages per second (0: as fast as the server answers)")
	f.IntVar(&batch, "batch", 100, "messages per send call, 1 to 1000")
	f.BoolVar(&dryRun, "dry-run", false, "read and check the input, print the first request, send nothing")
	f.BoolVarP(&quiet, "quiet", "q", false, "print no per-message result")
	return cmd
}

// parseFutureTime reads an absolute time (RFC 3339 or Unix seconds).
func parseFutureTime(s string) (*timestamppb.Timestamp, error) {
	if s == "" {
		return nil, nil
	}
	if _, err := time.ParseDuration(s); err == nil {
		return nil, usagef("--deliver-at %q: give a time; use --delay for a duration", s)
	}
	return parseTime(s)
}

// bodySource yields message bodies: the arguments, else the lines of src.
func bodySource(args []string, src io.Reader) func() ([]byte, bool, error) {
	if len(args) > 0 {
		i := 0
		return func() ([]byte, bool, error) {
			if i >= len(args) {
				return nil, false, nil
			}
			i++
			return []byte(args[i-1]), true, nil
		}
	}
	sc := bufio.NewScanner(src)
	sc.Buffer(make([]byte, 64<<10), maxLineBytes)
	return func() ([]byte, bool, error) {
		if !sc.Scan() {
			if err := sc.Err(); err != nil {
				return nil, false, usagef("reading messages: %v (a line is at most %d bytes)", err, maxLineBytes)
			}
			return nil, false, nil
		}
		return append([]byte(nil), sc.Bytes()...), true, nil
	}
}
