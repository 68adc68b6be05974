package cli

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// jsonOptions print the API's shapes as the REST API does: lowerCamelCase
// names, zero values written, unset messages left out.
var jsonOptions = protojson.MarshalOptions{Multiline: true, Indent: "  ", EmitDefaultValues: true}

// show prints an API response: as JSON or YAML in its own shape, or as a
// table drawn by table.
func (a *app) show(msg proto.Message, table func(t *tabwriter.Writer)) error {
	switch a.ctx.Output {
	case "json":
		b, err := jsonOptions.Marshal(msg)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.out, string(b))
		return err
	case "yaml":
		b, err := jsonOptions.Marshal(msg)
		if err != nil {
			return err
		}
		return writeYAML(a.out, b)
	}
	t := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	table(t)
	return t.Flush()
}

// showValue prints a plain Go value (a CLI-made shape) the same ways.
func (a *app) showValue(v any, table func(t *tabwriter.Writer)) error {
	switch a.ctx.Output {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(a.out, string(b))
		return err
	case "yaml":
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		return writeYAML(a.out, b)
	}
	t := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
	table(t)
	return t.Flush()
}

// writeYAML turns JSON into YAML keeping the order of its keys (JSON is
// YAML, and yaml.Node keeps order).
func writeYAML(w io.Writer, jsonText []byte) error {
	var node yaml.Node
	if err := yaml.Unmarshal(jsonText, &node); err != nil {
		return err
	}
	clearStyle(&node)
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&node); err != nil {
		return err
	}
	return enc.Close()
}

// clearStyle drops JSON's flow style so that the YAML is block style.
func clearStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	for _, c := range n.Content {
		clearStyle(c)
	}
}

// row writes one tab-separated table row.
func row(t *tabwriter.Writer, cells ...any) {
	parts := make([]string, len(cells))
	for i, c := range cells {
		parts[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(t, strings.Join(parts, "\t"))
}

// MessageLine is how consume, browse and dlq print a message with -o json
// (one JSON object per line) or -o yaml (one document each).
type MessageLine struct {
	ID            string         `json:"id"`
	Partition     int32          `json:"partition"`
	Offset        int64          `json:"offset"`
	PublishTime   string         `json:"publishTime,omitempty"`
	DeliveryCount int32          `json:"deliveryCount,omitempty"`
	Body          *string        `json:"body,omitempty"`       // the body as text, when it is UTF-8
	BodyBase64    string         `json:"bodyBase64,omitempty"` // the body in base64, when it is not
	Attributes    map[string]any `json:"attributes,omitempty"`
	Tags          []string       `json:"tags,omitempty"`
	OrderingKey   string         `json:"orderingKey,omitempty"`
	ReceiptHandle string         `json:"receiptHandle,omitempty"` // consume --no-ack: to settle it later
	DeadLetter    *DeadLetter    `json:"deadLetter,omitempty"`
}

// DeadLetter is why a message became a dead letter.
type DeadLetter struct {
	FailureCount      int32  `json:"failureCount"`
	LastFailureReason string `json:"lastFailureReason"`
	DeadLetterTime    string `json:"deadLetterTime,omitempty"`
	SourcePartition   int32  `json:"sourcePartition"`
	SourceOffset      int64  `json:"sourceOffset"`
}

func messageLine(m *dmsv1.ReceivedMessage) MessageLine {
	line := MessageLine{
		ID: m.GetMessageId(), Partition: m.GetPartition(), Offset: m.GetOffset(), DeliveryCount: m.GetDeliveryCount(),
		Tags: m.GetMessage().GetTags(), OrderingKey: m.GetMessage().GetOrderingKey(), ReceiptHandle: m.GetReceiptHandle(),
		PublishTime: timeText(m.GetPublishTime()),
	}
	body := m.GetMessage().GetBody()
	if utf8.Valid(body) {
		s := string(body)
		line.Body = &s
	} else {
		line.BodyBase64 = base64.StdEncoding.EncodeToString(body)
	}
	if attrs := m.GetMessage().GetAttributes(); len(attrs) > 0 {
		line.Attributes = map[string]any{}
		for k, v := range attrs {
			switch x := v.GetKind().(type) {
			case *dmsv1.AttributeValue_StringValue:
				line.Attributes[k] = x.StringValue
			case *dmsv1.AttributeValue_IntValue:
				line.Attributes[k] = x.IntValue
			case *dmsv1.AttributeValue_DoubleValue:
				line.Attributes[k] = x.DoubleValue
			case *dmsv1.AttributeValue_BoolValue:
				line.Attributes[k] = x.BoolValue
			}
		}
	}
	if d := m.GetDeadLetter(); d != nil {
		line.DeadLetter = &DeadLetter{FailureCount: d.GetFailureCount(), LastFailureReason: d.GetLastFailureReason(),
			DeadLetterTime: timeText(d.GetDeadLetterTime()), SourcePartition: d.GetSourcePartition(), SourceOffset: d.GetSourceOffset()}
	}
	return line
}

// messagePrinter prints messages as they come: a table with a header first,
// JSON lines, or YAML documents.
type messagePrinter struct {
	a      *app
	t      *tabwriter.Writer
	header bool
	dead   bool
	n      int
}

func (a *app) messagePrinter(dead bool) *messagePrinter {
	return &messagePrinter{a: a, t: tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0), dead: dead}
}

func (p *messagePrinter) print(line MessageLine) error {
	p.n++
	switch p.a.ctx.Output {
	case "json":
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(p.a.out, string(b))
		return err
	case "yaml":
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		if p.n > 1 {
			fmt.Fprintln(p.a.out, "---")
		}
		return writeYAML(p.a.out, b)
	}
	if !p.header {
		p.header = true
		if p.dead {
			row(p.t, "ID", "FAILURES", "REASON", "DEAD SINCE", "SOURCE", "TAGS", "BODY")
		} else {
			row(p.t, "PARTITION", "OFFSET", "ID", "PUBLISHED", "TAGS", "BODY")
		}
	}
	body := line.BodyBase64
	if line.Body != nil {
		body = *line.Body
	}
	if p.dead && line.DeadLetter != nil {
		d := line.DeadLetter
		row(p.t, line.ID, d.FailureCount, d.LastFailureReason, d.DeadLetterTime, fmt.Sprintf("%d/%d", d.SourcePartition, d.SourceOffset), strings.Join(line.Tags, ","), cell(body, 60))
	} else {
		row(p.t, line.Partition, line.Offset, line.ID, line.PublishTime, strings.Join(line.Tags, ","), cell(body, 60))
	}
	return nil
}

// flush writes the table rows printed so far, aligned together: once per
// page or received batch.
func (p *messagePrinter) flush() error { return p.t.Flush() }

// cell makes text fit one table cell: quoted escapes for control
// characters, cut at n runes.
func cell(s string, n int) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if r := []rune(q); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	if q == "" {
		return "-"
	}
	return q
}

func timeText(t *timestamppb.Timestamp) string {
	if t == nil || (t.GetSeconds() == 0 && t.GetNanos() == 0) {
		return ""
	}
	return t.AsTime().UTC().Format(time.RFC3339Nano)
}

func durationText(d time.Duration) string {
	switch {
	case d == 0:
		return "-"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
