package dms

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Every Reason constant must name a value of the public ErrorReason enum, or
// programs comparing against it would wait for a reason that never comes.
func TestReasonConstantsAreInTheProtoEnum(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	seen := map[string]bool{}
	ast.Inspect(f, func(node ast.Node) bool {
		spec, ok := node.(*ast.ValueSpec)
		if !ok {
			return true
		}
		if typ, ok := spec.Type.(*ast.Ident); !ok || typ.Name != "Reason" {
			return true
		}
		for i, name := range spec.Names {
			value, _ := strconv.Unquote(spec.Values[i].(*ast.BasicLit).Value)
			if _, ok := dmsv1.ErrorReason_value["ERROR_REASON_"+value]; !ok {
				t.Errorf("%s = %q is not in dms.v1.ErrorReason", name.Name, value)
			}
			if want := "Reason" + camel(value); name.Name != want {
				t.Errorf("%s should be called %s", name.Name, want)
			}
			seen[value] = true
			n++
		}
		return true
	})
	if n < 42 {
		t.Fatalf("found only %d Reason constants", n)
	}
	// And the other way: a reason the server sends has a constant.
	for name, v := range dmsv1.ErrorReason_value {
		if v == 0 {
			continue
		}
		if value := strings.TrimPrefix(name, "ERROR_REASON_"); !seen[value] {
			t.Errorf("dms.v1.ErrorReason %s has no Reason constant", name)
		}
	}
}

// camel turns FOO_BAR into FooBar, keeping Go's initialisms (ID) upper
// case.
func camel(s string) string {
	out := []byte{}
	for word := range strings.SplitSeq(s, "_") {
		if word == "ID" {
			out = append(out, word...)
			continue
		}
		out = append(out, word[0])
		out = append(out, strings.ToLower(word[1:])...)
	}
	return string(out)
}

func TestErrorRoundTripsThroughStatus(t *testing.T) {
	in := &Error{Code: codes.NotFound, Reason: ReasonQueueNotFound, Message: `queue "x" not found`, Metadata: map[string]string{"queue": "x"}}
	out := fromRPC(context.Background(), status.Convert(in).Err())
	var e *Error
	if !errors.As(out, &e) {
		t.Fatalf("%T", out)
	}
	if e.Code != in.Code || e.Reason != in.Reason || e.Message != in.Message || e.Metadata["queue"] != "x" {
		t.Fatalf("got %+v, want %+v", e, in)
	}
	if got := e.Error(); got != `dms: QUEUE_NOT_FOUND (NotFound): queue "x" not found` {
		t.Fatalf("Error() = %s", got)
	}
}

func TestErrorOfOtherDomainHasNoReason(t *testing.T) {
	err := fromRPC(context.Background(), status.Error(codes.Unavailable, "connection refused"))
	if ReasonOf(err) != "" || CodeOf(err) != codes.Unavailable || !IsRetryable(err) {
		t.Fatalf("got %v", err)
	}
}

func TestCanceledCallUnwrapsToTheContextError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := fromRPC(ctx, status.Error(codes.Canceled, "context canceled"))
	if !errors.Is(err, context.Canceled) || IsRetryable(err) {
		t.Fatalf("got %v", err)
	}
	// A timeout of the server's own making is not the caller's context.
	err = fromRPC(context.Background(), status.Error(codes.DeadlineExceeded, "slow storage"))
	if errors.Is(err, context.DeadlineExceeded) || !IsRetryable(err) {
		t.Fatalf("got %v", err)
	}
}

func TestAttributes(t *testing.T) {
	m := Message{Body: []byte("abc"), Attributes: map[string]any{"s": "xy", "i": 7, "u": uint16(3), "f": float32(1.5), "b": true}}
	pm, err := m.toProto()
	if err != nil {
		t.Fatal(err)
	}
	back := attributesFromProto(pm.GetAttributes())
	want := map[string]any{"s": "xy", "i": int64(7), "u": int64(3), "f": 1.5, "b": true}
	for k, v := range want {
		if back[k] != v {
			t.Errorf("attribute %s = %#v, want %#v", k, back[k], v)
		}
	}
	// The server counts body + per attribute name + 8 + string value.
	if got, want := m.Size(), 3+(1+8+2)+4*(1+8); got != want {
		t.Errorf("Size = %d, want %d", got, want)
	}
	if _, err := (&Message{Attributes: map[string]any{"x": uint64(1)}}).toProto(); err == nil {
		t.Error("uint64 attribute accepted")
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	r := RetryPolicy{MaxAttempts: 5, InitialBackoff: 100, MaxBackoff: 350}
	for retry, ceiling := range map[int]int64{1: 100, 2: 200, 3: 350, 9: 350} {
		for range 50 {
			if d := int64(r.backoff(retry)); d < ceiling/2 || d > ceiling {
				t.Fatalf("backoff(%d) = %d, want %d..%d", retry, d, ceiling/2, ceiling)
			}
		}
	}
}

func TestHandlerOutcomes(t *testing.T) {
	plain := errors.New("boom")
	for _, c := range []struct {
		err  error
		want AckStatus
	}{
		{nil, AckSuccess},
		{plain, AckFail},
		{Redeliver(plain), AckRedeliver},
		{Redeliver(nil), AckRedeliver},
		{fmt.Errorf("calling billing: %w", Redeliver(plain)), AckRedeliver},
	} {
		if got := ackStatusFor(c.err); got != c.want {
			t.Errorf("ackStatusFor(%v) = %s, want %s", c.err, got, c.want)
		}
	}
	if err := Redeliver(plain); !errors.Is(err, plain) || err.Error() != "dms: redeliver later: boom" {
		t.Errorf("Redeliver(plain) = %v", err)
	}
}

func TestScheduleFieldsGoToTheProto(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	pm, err := (&Message{Body: []byte("x"), Delay: 90 * time.Second, DeliverTime: at, OrderingKey: "k"}).toProto()
	if err != nil {
		t.Fatal(err)
	}
	if pm.GetDelay().AsDuration() != 90*time.Second || !pm.GetDeliverTime().AsTime().Equal(at) || pm.GetOrderingKey() != "k" {
		t.Fatalf("proto %v", pm)
	}
	pm, _ = (&Message{Body: []byte("x")}).toProto()
	if pm.GetDelay() != nil || pm.GetDeliverTime() != nil {
		t.Fatalf("an unscheduled message has schedule fields: %v", pm)
	}
}
