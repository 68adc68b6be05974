package message

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// Filter selects stored messages for the reads that do not consume
// (browsing a queue, listing dead letters): by id, tags, attributes and a
// time range. The zero Filter passes everything.
type Filter struct {
	IDs        []string
	Tags       *dmsv1.TagFilter // normalized
	Attributes []AttributeMatch
	// From and Until bound the time (inclusive, exclusive), in Unix
	// milliseconds; 0 leaves that side open.
	From, Until int64
}

// AttributeMatch is one `name=value` (or bare `name`) attribute condition.
type AttributeMatch struct {
	Name  string
	Value string
	Any   bool // a bare name: any value
}

// MaxFilterIDs bounds the message ids one filter names.
const MaxFilterIDs = 1000

// NewFilter checks the filters of a request and returns them in the form
// Matches takes.
func NewFilter(ids []string, tags *dmsv1.TagFilter, attributes []string, from, until *timestamppb.Timestamp) (Filter, error) {
	var f Filter
	if len(ids) > MaxFilterIDs {
		return f, errs.Wrapf(errs.ErrRequestInvalid, "at most %d message ids, got %d", MaxFilterIDs, len(ids))
	}
	f.IDs = ids
	var err error
	if f.Tags, err = NormalizeTagFilter(tags); err != nil {
		return f, err
	}
	for _, a := range attributes {
		name, value, hasValue := strings.Cut(a, "=")
		if name == "" || len(name) > maxAttributeNameLen {
			return f, errs.Wrapf(errs.ErrAttributeInvalid, "attribute filter %q: write name=value or name, with a name of 1 to %d characters", a, maxAttributeNameLen)
		}
		f.Attributes = append(f.Attributes, AttributeMatch{Name: name, Value: value, Any: !hasValue})
	}
	for _, t := range []*timestamppb.Timestamp{from, until} {
		if t != nil && t.CheckValid() != nil {
			return f, errs.Wrapf(errs.ErrRequestInvalid, "time %v is not a valid timestamp", t)
		}
	}
	if from != nil {
		f.From = from.AsTime().UnixMilli()
	}
	if until != nil {
		f.Until = until.AsTime().UnixMilli()
	}
	if f.From != 0 && f.Until != 0 && f.Until <= f.From {
		return f, errs.Wrapf(errs.ErrRequestInvalid, "end_time %s is not after start_time %s", until.AsTime().Format(time.RFC3339Nano), from.AsTime().Format(time.RFC3339Nano))
	}
	return f, nil
}

// maxAttributeNameLen is the longest attribute name a message may carry.
const maxAttributeNameLen = 64

// Matches reports whether a message with this id, stored (or dead-lettered)
// at timeMs, passes the filter.
func (f Filter) Matches(id string, timeMs int64, m *dmsv1.Message) bool {
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, id) {
		return false
	}
	if (f.From != 0 && timeMs < f.From) || (f.Until != 0 && timeMs >= f.Until) {
		return false
	}
	if !Matches(f.Tags, m.GetTags()) {
		return false
	}
	for _, a := range f.Attributes {
		v, ok := m.GetAttributes()[a.Name]
		if !ok || (!a.Any && AttributeText(v) != a.Value) {
			return false
		}
	}
	return true
}

// AttributeText is an attribute value as text: a string as it is, an int in
// decimal, a bool as true or false, a double in its shortest form.
func AttributeText(v *dmsv1.AttributeValue) string {
	switch k := v.GetKind().(type) {
	case *dmsv1.AttributeValue_StringValue:
		return k.StringValue
	case *dmsv1.AttributeValue_IntValue:
		return strconv.FormatInt(k.IntValue, 10)
	case *dmsv1.AttributeValue_DoubleValue:
		return strconv.FormatFloat(k.DoubleValue, 'g', -1, 64)
	case *dmsv1.AttributeValue_BoolValue:
		return strconv.FormatBool(k.BoolValue)
	}
	return ""
}

// PageToken encodes where a scan of logs continues: the next offset of each
// partition (or of the one dead-letter queue), in the order given.
func PageToken(next map[int32]int64, order []int32) string {
	var b strings.Builder
	for i, p := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d", p, next[p])
	}
	return base64.RawURLEncoding.EncodeToString([]byte("o1;" + b.String()))
}

// ParsePageToken decodes a PageToken and checks that it names exactly the
// partitions of order.
func ParsePageToken(tok string, order []int32) (map[int32]int64, error) {
	bad := errs.Wrapf(errs.ErrPageTokenInvalid, "page token %q is not one this server issued for these partitions", tok)
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, bad
	}
	body, ok := strings.CutPrefix(string(raw), "o1;")
	if !ok {
		return nil, bad
	}
	parts := strings.Split(body, ",")
	if len(parts) != len(order) {
		return nil, bad
	}
	out := make(map[int32]int64, len(parts))
	for i, part := range parts {
		ps, os, ok := strings.Cut(part, ":")
		p, err1 := strconv.ParseInt(ps, 10, 32)
		o, err2 := strconv.ParseInt(os, 10, 64)
		if !ok || err1 != nil || err2 != nil || int32(p) != order[i] || o < 0 {
			return nil, bad
		}
		out[int32(p)] = o
	}
	return out, nil
}
