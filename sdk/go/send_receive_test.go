package dms_test

import (
	"reflect"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

func TestSendReceiveAck(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Mode: dms.QueueModeFIFO})

	results, err := p.Send(ctx, q,
		dms.Message{Body: []byte("one"), Attributes: map[string]any{"region": "eu", "n": 42, "ratio": 0.5, "vip": true}, Tags: []string{"new"}},
		dms.Message{Body: []byte("two")},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || results[0].MessageID == "" || results[1].Offset != results[0].Offset+1 {
		t.Fatalf("send results %+v", results)
	}

	msgs, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{MaxMessages: 10, WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("received %d messages, want 2", len(msgs))
	}
	one, two := msgs[0], msgs[1]
	if string(one.Body) != "one" || one.ID != results[0].MessageID || one.DeliveryCount != 1 || one.ReceiptHandle == "" {
		t.Fatalf("first message %+v", one)
	}
	if one.Attributes["region"] != "eu" || one.Attributes["n"] != int64(42) || one.Attributes["ratio"] != 0.5 || one.Attributes["vip"] != true {
		t.Fatalf("attributes %#v", one.Attributes)
	}
	if len(one.Tags) != 1 || one.Tags[0] != "new" || one.PublishTime.IsZero() || time.Until(one.VisibleAt) < 10*time.Second {
		t.Fatalf("first message %+v", one)
	}

	acks, err := p.Ack(ctx, q, "g", one.Success(), two.Fail(), dms.Ack{ReceiptHandle: "garbage"})
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 3 || !acks[0].Applied || !acks[1].Applied {
		t.Fatalf("ack results %+v", acks)
	}
	if acks[2].Applied || acks[2].Reason != dms.ReasonReceiptHandleInvalid || acks[2].Message == "" {
		t.Fatalf("ack of a garbage handle: %+v", acks[2])
	}

	// The failed message comes back at once, counted.
	again, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{WaitTime: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || string(again[0].Body) != "two" || again[0].DeliveryCount != 2 {
		t.Fatalf("redelivery %+v", again)
	}
	acks, err = p.Ack(ctx, q, "g", again[0].Success(), one.Success())
	if err != nil {
		t.Fatal(err)
	}
	if !acks[0].Applied || acks[1].Applied || acks[1].Reason != dms.ReasonReceiptHandleExpired {
		t.Fatalf("second acks %+v", acks)
	}

	none, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{})
	if err != nil || len(none) != 0 {
		t.Fatalf("receive after everything was acked: %d messages, %v", len(none), err)
	}
	g, err := p.GetGroup(ctx, q, "g")
	if err != nil {
		t.Fatal(err)
	}
	if g.Stats.Produced != 2 || g.Stats.Consumed != 2 || g.Stats.InFlight != 0 {
		t.Fatalf("group stats %+v", g.Stats)
	}
}

func TestSendRejectsUnsupportedAttributes(t *testing.T) {
	p := newProject(t)
	_, err := p.Send(ctxTimeout(t, 5*time.Second), "any", dms.Message{Attributes: map[string]any{"when": time.Now()}})
	if err == nil || dms.ReasonOf(err) != "" {
		t.Fatalf("got %v, want a client-side error", err)
	}
}

func TestReceiveLongPollsUntilAMessageArrives(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	// The server's long poll does not notice the first message ever stored
	// in a partition (its log does not exist yet when the poll starts), so
	// the partition gets one message before the poll.
	sendN(t, p, q, 1)
	drain(t, p, q, 1)
	got := make(chan []*dms.ReceivedMessage, 1)
	errc := make(chan error, 1)
	go func() {
		msgs, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{WaitTime: 20 * time.Second})
		errc <- err
		got <- msgs
	}()
	// Give the receive time to reach the server and wait there; it does not
	// matter for correctness if it has not.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if _, err := p.Send(ctx, q, dms.Message{Body: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	msgs := <-got
	if len(msgs) != 1 || string(msgs[0].Body) != "late" {
		t.Fatalf("got %+v", msgs)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("the long poll answered only after %s", time.Since(start))
	}
}

func TestSendIdempotentStoresOnce(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	batch := []dms.Message{{Body: []byte("a")}, {Body: []byte("b")}}
	first, err := p.SendIdempotent(ctx, q, "batch-1", batch...)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.SendIdempotent(ctx, q, "batch-1", batch...)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(first, again) {
		t.Fatalf("a retry returned %+v, want the first attempt's %+v", again, first)
	}
	got, err := p.GetQueue(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if got.MessageCount != 2 {
		t.Fatalf("queue holds %d messages, want 2: the retry stored the batch again", got.MessageCount)
	}
}
