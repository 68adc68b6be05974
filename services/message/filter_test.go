package message

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// The filters of the reads that do not consume: ids, tags, typed
// attributes compared as text, and a half-open time range.
func TestFilterMatches(t *testing.T) {
	m := &dmsv1.Message{Tags: []string{"a", "b"}, Attributes: map[string]*dmsv1.AttributeValue{
		"s": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "eu"}},
		"i": {Kind: &dmsv1.AttributeValue_IntValue{IntValue: 5}},
		"d": {Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: 1.5}},
		"b": {Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: true}},
	}}
	ms := func(n int64) *timestamppb.Timestamp {
		if n == 0 {
			return nil
		}
		return timestamppb.New(time.UnixMilli(n))
	}
	for _, tc := range []struct {
		name        string
		ids         []string
		tags        *dmsv1.TagFilter
		attrs       []string
		from, until int64
		want        bool
	}{
		{name: "everything", want: true},
		{name: "id", ids: []string{"x", "id1"}, want: true},
		{name: "other id", ids: []string{"x"}, want: false},
		{name: "tag any", tags: &dmsv1.TagFilter{Tags: []string{"b", "z"}}, want: true},
		{name: "tag all", tags: &dmsv1.TagFilter{Tags: []string{"b", "z"}, Match: dmsv1.TagMatch_TAG_MATCH_ALL}, want: false},
		{name: "typed attributes as text", attrs: []string{"s=eu", "i=5", "d=1.5", "b=true"}, want: true},
		{name: "bare name", attrs: []string{"s"}, want: true},
		{name: "missing attribute", attrs: []string{"nope"}, want: false},
		{name: "other value", attrs: []string{"i=6"}, want: false},
		{name: "time inside", from: 100, until: 200, want: true},
		{name: "before from", from: 151, want: false},
		{name: "until is exclusive", until: 150, want: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFilter(tc.ids, tc.tags, tc.attrs, ms(tc.from), ms(tc.until))
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Matches("id1", 150, m); got != tc.want {
				t.Errorf("matches: %v, want %v", got, tc.want)
			}
		})
	}
	for _, bad := range []struct {
		attrs       []string
		from, until int64
		reason      string
	}{
		{attrs: []string{"=v"}, reason: "ATTRIBUTE_INVALID"},
		{from: 200, until: 100, reason: "REQUEST_INVALID"},
	} {
		if _, err := NewFilter(nil, nil, bad.attrs, ms(bad.from), ms(bad.until)); reasonOf(err) != bad.reason {
			t.Errorf("%+v: %v, want %s", bad, err, bad.reason)
		}
	}
}

// Page tokens are untrusted input: any string either parses into offsets
// for exactly the partitions asked, which encode back to the same offsets,
// or is refused with PAGE_TOKEN_INVALID.
func FuzzParsePageToken(f *testing.F) {
	f.Add(PageToken(map[int32]int64{0: 5, 2: 9}, []int32{0, 2}), uint8(2))
	f.Add("bogus", uint8(1))
	f.Add(PageToken(map[int32]int64{0: 0}, []int32{0}), uint8(1))
	f.Fuzz(func(t *testing.T, tok string, n uint8) {
		order := make([]int32, int(n%8))
		for i := range order {
			order[i] = int32(i * 2)
		}
		next, err := ParsePageToken(tok, order)
		if err != nil {
			if reasonOf(err) != "PAGE_TOKEN_INVALID" {
				t.Fatalf("refused with %v", err)
			}
			return
		}
		again, err := ParsePageToken(PageToken(next, order), order)
		if err != nil || len(again) != len(order) {
			t.Fatalf("re-encoded token: %v %v", again, err)
		}
		for _, p := range order {
			if again[p] != next[p] || next[p] < 0 {
				t.Fatalf("partition %d: %d then %d", p, next[p], again[p])
			}
		}
	})
}

func reasonOf(err error) string {
	if e := errs.Of(err); e != nil {
		return e.Reason
	}
	return ""
}
