package dms_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dms "github.com/opendms/dms/sdk/go"
)

func TestQueueAndGroupRoundTrip(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t)

	q, err := p.CreateQueue(ctx, dms.QueueConfig{Name: "orders", Description: "all orders", Mode: dms.QueueModeFIFO, Retention: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if q.DisplayName != "orders" || q.ID == "" || q.Mode != dms.QueueModeFIFO || q.Partitions != 1 || q.Retention != 24*time.Hour || q.Description != "all orders" {
		t.Fatalf("created queue: %+v", q)
	}
	if want := "projects/" + p.ID() + "/queues/" + q.ID; q.Name != want {
		t.Fatalf("queue name %q, want %q", q.Name, want)
	}
	if q.CreateTime.IsZero() || q.MaxMessageBytes == 0 {
		t.Fatalf("queue lacks output fields: %+v", q)
	}
	for _, ref := range []string{"orders", q.ID} {
		got, err := p.GetQueue(ctx, ref)
		if err != nil {
			t.Fatalf("GetQueue(%q): %v", ref, err)
		}
		if got.ID != q.ID {
			t.Fatalf("GetQueue(%q) = %s, want %s", ref, got.ID, q.ID)
		}
	}

	g, err := p.CreateGroup(ctx, "orders", "billing")
	if err != nil {
		t.Fatal(err)
	}
	if g.DisplayName != "billing" || g.ID == "" {
		t.Fatalf("created group: %+v", g)
	}
	if _, err := p.CreateGroup(ctx, q.ID, "shipping"); err != nil {
		t.Fatal(err)
	}
	got, err := p.GetGroup(ctx, "orders", g.ID)
	if err != nil || got.DisplayName != "billing" {
		t.Fatalf("GetGroup = %+v, %v", got, err)
	}
	groups, err := p.ListGroups(ctx, "orders")
	if err != nil {
		t.Fatal(err)
	}
	if len(groups) != 2 || groups[0].DisplayName != "billing" || groups[1].DisplayName != "shipping" {
		t.Fatalf("ListGroups = %+v", groups)
	}
	if err := p.DeleteGroup(ctx, "orders", "shipping"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetGroup(ctx, "orders", "shipping"); dms.ReasonOf(err) != dms.ReasonGroupNotFound {
		t.Fatalf("GetGroup of a deleted group: %v", err)
	}

	if err := p.DeleteQueue(ctx, "orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := p.GetQueue(ctx, "orders"); !dms.IsNotFound(err) {
		t.Fatalf("GetQueue of a deleted queue: %v", err)
	}
}

func TestListQueuesPages(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t, dms.WithListPageSize(2))
	var want []string
	for i := range 5 {
		name := "q" + string(rune('a'+i))
		if _, err := p.CreateQueue(ctx, dms.QueueConfig{Name: name}); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	var got []string
	for q, err := range p.ListQueues(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, q.DisplayName)
	}
	if len(got) != len(want) {
		t.Fatalf("ListQueues = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ListQueues = %v, want %v (oldest first)", got, want)
		}
	}
	// Breaking out of the loop early is fine.
	for q := range p.ListQueues(ctx) {
		if q.DisplayName != "qa" {
			t.Fatalf("first queue %q", q.DisplayName)
		}
		break
	}
}

func TestTypedErrors(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t)
	if _, err := p.CreateQueue(ctx, dms.QueueConfig{Name: "dup"}); err != nil {
		t.Fatal(err)
	}
	_, dupErr := p.CreateQueue(ctx, dms.QueueConfig{Name: "dup"})
	_, missingErr := p.GetQueue(ctx, "missing")
	_, badNameErr := p.CreateQueue(ctx, dms.QueueConfig{Name: "no spaces"})
	_, missingGroupErr := p.GetGroup(ctx, "dup", "nobody")
	_, sendErr := p.Send(ctx, "missing", dms.Message{Body: []byte("x")})
	_, badProjectErr := dial(t).Project("bad project!").GetQueue(ctx, "dup")

	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason dms.Reason
	}{
		{"duplicate queue", dupErr, codes.AlreadyExists, dms.ReasonQueueAlreadyExists},
		{"missing queue", missingErr, codes.NotFound, dms.ReasonQueueNotFound},
		{"bad queue name", badNameErr, codes.InvalidArgument, dms.ReasonQueueNameInvalid},
		{"missing group", missingGroupErr, codes.NotFound, dms.ReasonGroupNotFound},
		{"send to a missing queue", sendErr, codes.NotFound, dms.ReasonQueueNotFound},
		{"bad project", badProjectErr, codes.InvalidArgument, dms.ReasonProjectInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e *dms.Error
			if !errors.As(tt.err, &e) {
				t.Fatalf("error %v (%T) is not a *dms.Error", tt.err, tt.err)
			}
			if e.Code != tt.code || e.Reason != tt.reason || e.Message == "" {
				t.Fatalf("got code %s reason %q message %q, want %s %q", e.Code, e.Reason, e.Message, tt.code, tt.reason)
			}
			if dms.ReasonOf(tt.err) != tt.reason || dms.CodeOf(tt.err) != tt.code {
				t.Fatal("ReasonOf or CodeOf disagree with the *Error")
			}
			if status.Code(tt.err) != tt.code {
				t.Fatalf("status.Code = %s, want %s", status.Code(tt.err), tt.code)
			}
			if dms.IsNotFound(tt.err) != (tt.code == codes.NotFound) || dms.IsAlreadyExists(tt.err) != (tt.code == codes.AlreadyExists) {
				t.Fatal("IsNotFound or IsAlreadyExists disagree with the code")
			}
			if dms.IsRetryable(tt.err) {
				t.Fatal("a client error is not retryable")
			}
		})
	}
}
