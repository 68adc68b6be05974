package dms_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

func TestChangeVisibility(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	sendN(t, p, q, 1)
	got, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{MaxMessages: 1, VisibilityTimeout: 15 * time.Second})
	if err != nil || len(got) != 1 {
		t.Fatalf("receive: %d messages, %v", len(got), err)
	}
	results, err := p.ChangeVisibility(ctx, q, "g", time.Minute, got[0].ReceiptHandle, "bogus")
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Applied || results[1].Applied || results[1].Reason != dms.ReasonReceiptHandleInvalid {
		t.Fatalf("results %+v: want the first applied and the bogus handle refused", results)
	}
	acks, err := p.Ack(ctx, q, "g", got[0].Success())
	if err != nil || !acks[0].Applied {
		t.Fatalf("the handle stays valid after a visibility change: %+v, %v", acks, err)
	}
}

// A handler that runs past its message's visibility timeout keeps the
// message: the consumer extends the visibility while it runs, so a second
// consumer never gets it and it is handled once.
func TestConsumerExtendsVisibilityOfSlowHandlers(t *testing.T) {
	if testing.Short() {
		t.Skip("waits past the server's 15 s minimum visibility timeout")
	}
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	sendN(t, p, q, 1)
	var handled atomic.Int32
	started, done := make(chan struct{}), make(chan struct{})
	c := dms.NewConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		if handled.Add(1) == 1 {
			close(started)
		}
		select {
		case <-time.After(17 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		close(done)
		return nil
	}, dms.WithVisibilityTimeout(15*time.Second), dms.WithWaitTime(time.Second))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	// Once the handler holds the message, a second receiver polls the whole
	// time it runs.
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the consumer did not get the message")
	}
	rival := 0
	for {
		select {
		case <-done:
		default:
			msgs, err := p.Receive(ctxTimeout(t, 5*time.Second), q, "g", dms.ReceiveOptions{WaitTime: time.Second, VisibilityTimeout: 15 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			rival += len(msgs)
			continue
		}
		break
	}
	c.Stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if rival != 0 || handled.Load() != 1 {
		t.Fatalf("the slow message went to a rival %d times and to the handler %d times; want 0 and 1", rival, handled.Load())
	}
}
