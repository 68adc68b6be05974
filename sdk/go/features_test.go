package dms_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

// receiveAll receives until n messages came or a receive waited in vain.
func receiveAll(t *testing.T, p *dms.Project, queue, group string, n int, opts dms.ReceiveOptions) []*dms.ReceivedMessage {
	t.Helper()
	if opts.WaitTime == 0 {
		opts.WaitTime = 300 * time.Millisecond
	}
	var out []*dms.ReceivedMessage
	for len(out) < n {
		opts.MaxMessages = n - len(out)
		msgs, err := p.Receive(ctxTimeout(t, 10*time.Second), queue, group, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		out = append(out, msgs...)
	}
	return out
}

func bodies(msgs []*dms.ReceivedMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Body)
	}
	sort.Strings(out)
	return out
}

func ackAll(t *testing.T, p *dms.Project, queue, group string, msgs []*dms.ReceivedMessage) {
	t.Helper()
	acks := make([]dms.Ack, len(msgs))
	for i, m := range msgs {
		acks[i] = m.Success()
	}
	results, err := p.Ack(ctxTimeout(t, 10*time.Second), queue, group, acks...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if !r.Applied {
			t.Fatalf("ack of %s not applied: %+v", msgs[i].Body, r)
		}
	}
}

func getGroup(t *testing.T, p *dms.Project, queue, group string) *dms.Group {
	t.Helper()
	g, err := p.GetGroup(ctxTimeout(t, 10*time.Second), queue, group)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestRedeliverAckHidesTheMessageForTheRetryDelay(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	sendN(t, p, q, 2)
	msgs := receiveAll(t, p, q, "g", 2, dms.ReceiveOptions{})
	if len(msgs) != 2 {
		t.Fatalf("received %d messages", len(msgs))
	}
	results, err := p.Ack(ctx, q, "g", msgs[0].Redeliver(), msgs[1].Fail())
	if err != nil || !results[0].Applied || !results[1].Applied {
		t.Fatalf("acks %+v, %v", results, err)
	}
	// The failed one is back at once, the redelivered one is not.
	again, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{MaxMessages: 10, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != 1 || string(again[0].Body) != string(msgs[1].Body) || again[0].DeliveryCount != 2 {
		t.Fatalf("after redeliver and fail: got %v", bodies(again))
	}
	ackAll(t, p, q, "g", again)
	g := getGroup(t, p, q, "g")
	if g.Stats.InFlight != 0 || g.Stats.Available != 1 || g.Stats.Consumed != 1 || g.Stats.OldestUnackedAge <= 0 {
		t.Fatalf("stats while the message waits for its retry: %+v", g.Stats)
	}
}

func TestHandlerRedeliverSendsRedeliverAck(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	sendN(t, p, q, 3)

	var mu sync.Mutex
	seen := map[string]int{}
	handled := make(chan struct{}, 3)
	c := dms.NewConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		mu.Lock()
		seen[string(m.Body)]++
		mu.Unlock()
		defer func() { handled <- struct{}{} }()
		if string(m.Body) == "1" {
			return fmt.Errorf("downstream busy: %w", dms.Redeliver(errors.New("rate limited")))
		}
		return nil
	}, dms.WithWaitTime(time.Second))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	for range 3 {
		select {
		case <-handled:
		case <-time.After(10 * time.Second):
			t.Fatal("messages were not handled")
		}
	}
	// Long enough for a plain failure to have come back.
	time.Sleep(1500 * time.Millisecond)
	c.Stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["1"] != 1 || len(seen) != 3 {
		t.Fatalf("deliveries %v: the redelivered message came back at once", seen)
	}
	// Not in flight (a missing ack would leave it so), not acked.
	var last dms.GroupStats
	eventually(t, 10*time.Second, func() bool {
		last = getGroup(t, p, q, "g").Stats
		return last.Produced == 3 && last.Consumed == 2 && last.Available == 1 && last.InFlight == 0
	}, "stats %+v", &last)
	if none, err := p.Receive(ctxTimeout(t, 5*time.Second), q, "g", dms.ReceiveOptions{}); err != nil || len(none) != 0 {
		t.Fatalf("receive right after the redeliver: %d messages, %v", len(none), err)
	}
}

func TestTagFilter(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	if _, err := p.CreateGroup(ctx, q, "both"); err != nil {
		t.Fatal(err)
	}
	_, err := p.Send(ctx, q,
		dms.Message{Body: []byte("a"), Tags: []string{"red"}},
		dms.Message{Body: []byte("b"), Tags: []string{"blue"}},
		dms.Message{Body: []byte("ab"), Tags: []string{"red", "blue"}},
		dms.Message{Body: []byte("none")},
	)
	if err != nil {
		t.Fatal(err)
	}
	red := &dms.TagFilter{Tags: []string{"red"}}
	msgs := receiveAll(t, p, q, "g", 4, dms.ReceiveOptions{TagFilter: red})
	if got := bodies(msgs); !slices.Equal(got, []string{"a", "ab"}) {
		t.Fatalf("red: got %v", got)
	}
	if msgs[0].Tags[0] != "red" {
		t.Fatalf("tags %v", msgs[0].Tags)
	}
	// The group keeps its filter.
	_, err = p.Receive(ctx, q, "g", dms.ReceiveOptions{TagFilter: &dms.TagFilter{Tags: []string{"blue"}}})
	if dms.ReasonOf(err) != dms.ReasonTagFilterConflict {
		t.Fatalf("another filter: %v, want TAG_FILTER_CONFLICT", err)
	}
	g := getGroup(t, p, q, "g")
	if g.TagFilter == nil || !slices.Equal(g.TagFilter.Tags, []string{"red"}) || g.TagFilter.MatchAll {
		t.Fatalf("group filter %+v", g.TagFilter)
	}
	if g := getGroup(t, p, q, "both"); g.TagFilter != nil {
		t.Fatalf("a group that never filtered has filter %+v", g.TagFilter)
	}

	// A consumer with a match-all filter on another group.
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	c := dms.NewConsumer(p, q, "both", func(ctx context.Context, m *dms.ReceivedMessage) error {
		mu.Lock()
		got = append(got, string(m.Body))
		mu.Unlock()
		close(done)
		return nil
	}, dms.WithTagFilter([]string{"red", "blue"}, true), dms.WithWaitTime(time.Second))
	go c.Run(context.Background())
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the consumer got nothing")
	}
	time.Sleep(300 * time.Millisecond) // a second message would show now
	c.Stop()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []string{"ab"}) {
		t.Fatalf("match all: got %v", got)
	}
	if g := getGroup(t, p, q, "both"); g.TagFilter == nil || !g.TagFilter.MatchAll {
		t.Fatalf("group filter %+v", g.TagFilter)
	}
}

func TestOrderingKeyOnFIFOQueue(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Mode: dms.QueueModeFIFO})
	var msgs []dms.Message
	for i := range 3 {
		for _, key := range []string{"k1", "k2"} {
			msgs = append(msgs, dms.Message{Body: fmt.Appendf(nil, "%s-%d", key, i), OrderingKey: key})
		}
	}
	if _, err := p.Send(ctx, q, msgs...); err != nil {
		t.Fatal(err)
	}
	var ackLater []*dms.ReceivedMessage
	receive := func(n int) []string {
		got, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{MaxMessages: n, WaitTime: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, len(got))
		for i, m := range got {
			if m.OrderingKey != string(m.Body[:2]) {
				t.Fatalf("message %s has ordering key %q", m.Body, m.OrderingKey)
			}
			out[i] = string(m.Body)
		}
		ackLater = append(ackLater, got...)
		return out
	}
	first := receive(1)
	if !slices.Equal(first, []string{"k1-0"}) {
		t.Fatalf("first receive: %v", first)
	}
	// k1 waits behind its message in flight; k2 proceeds, in order.
	if got := receive(10); !slices.Equal(got, []string{"k2-0", "k2-1", "k2-2"}) {
		t.Fatalf("while k1-0 is in flight: %v", got)
	}
	if got := receive(10); len(got) != 0 {
		t.Fatalf("while every key is in flight: %v", got)
	}
	ackAll(t, p, q, "g", ackLater[:1])
	if got := receive(10); !slices.Equal(got, []string{"k1-1", "k1-2"}) {
		t.Fatalf("after k1-0 was acked: %v", got)
	}
}

func TestOrderingKeyPicksThePartitionOfANormalQueue(t *testing.T) {
	ctx := ctxTimeout(t, 20*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 3})
	msgs := make([]dms.Message, 12)
	for i := range msgs {
		msgs[i] = dms.Message{Body: []byte{byte(i)}, OrderingKey: "customer-42"}
	}
	results, err := p.Send(ctx, q, msgs...)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range results {
		if r.Partition != results[0].Partition || (i > 0 && r.Offset != results[i-1].Offset+1) {
			t.Fatalf("keyed messages spread: %+v", results)
		}
	}
}

func TestBroadcastConsumersEachGetEveryMessage(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 2})
	sendN(t, p, q, 10)
	all := []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}

	// Without a consumer id, broadcast is refused.
	_, err := p.Receive(ctx, q, "g", dms.ReceiveOptions{Broadcast: &dms.Broadcast{}})
	if dms.ReasonOf(err) != dms.ReasonConsumerIDRequired {
		t.Fatalf("broadcast without consumer id: %v", err)
	}

	// Two receive-level consumers, auto-acked: each gets all, once.
	for _, id := range []string{"c1", "c2"} {
		opts := dms.ReceiveOptions{ConsumerID: id, Broadcast: &dms.Broadcast{Start: dms.BroadcastStartEarliest, AutoAck: true}}
		got := receiveAll(t, p, q, "g", 20, opts)
		if !slices.Equal(bodies(got), all) {
			t.Fatalf("%s got %v", id, bodies(got))
		}
		if got[0].ReceiptHandle != "" || !got[0].VisibleAt.IsZero() {
			t.Fatalf("auto-acked message %+v", got[0])
		}
	}

	// A broadcast consumer that acks, through the Consumer, next to a
	// latecomer that starts at the latest message.
	late := receiveAll(t, p, q, "g", 1, dms.ReceiveOptions{ConsumerID: "late", Broadcast: &dms.Broadcast{Start: dms.BroadcastStartLatest}})
	if len(late) != 0 {
		t.Fatalf("a consumer starting at the latest got %v", bodies(late))
	}
	var mu sync.Mutex
	var got []string
	done := make(chan struct{})
	c := dms.NewConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		mu.Lock()
		defer mu.Unlock()
		if got = append(got, string(m.Body)); len(got) == 10 {
			close(done)
		}
		return nil
	}, dms.WithBroadcast(dms.BroadcastStartEarliest, false), dms.WithConsumerID("c3"), dms.WithWaitTime(time.Second))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the broadcast consumer did not get every message")
	}
	c.Stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	sort.Strings(got)
	if !slices.Equal(got, all) {
		t.Fatalf("c3 got %v", got)
	}
	// Its acks applied: nothing comes back to it; the group is untouched.
	if again := receiveAll(t, p, q, "g", 10, dms.ReceiveOptions{ConsumerID: "c3", Broadcast: &dms.Broadcast{}}); len(again) != 0 {
		t.Fatalf("c3 got %v again", bodies(again))
	}
	if shared := receiveAll(t, p, q, "g", 20, dms.ReceiveOptions{}); len(shared) != 10 {
		t.Fatalf("the group's shared consumption got %d messages, want 10", len(shared))
	}
}

func TestDeadLettersAndRedrive(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1, DeadLetters: true, MaxConsumeCount: 1})
	_, err := p.Send(ctx, q,
		dms.Message{Body: []byte("x"), Tags: []string{"retry"}},
		dms.Message{Body: []byte("y")},
		dms.Message{Body: []byte("z")},
	)
	if err != nil {
		t.Fatal(err)
	}
	msgs := receiveAll(t, p, q, "g", 3, dms.ReceiveOptions{})
	if len(msgs) != 3 {
		t.Fatalf("received %d", len(msgs))
	}
	for _, m := range msgs {
		if _, err := p.Ack(ctx, q, "g", m.Fail()); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, func() bool {
		s := getGroup(t, p, q, "g").Stats
		return s.DeadLetters == 3 && s.AvailableDeadLetters == 3
	}, "three dead letters in the stats")

	dead, err := p.ReceiveDeadLetters(ctx, q, "g", dms.ReceiveOptions{MaxMessages: 10, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(bodies(dead), []string{"x", "y", "z"}) {
		t.Fatalf("dead letters %v", bodies(dead))
	}
	byBody := map[string]*dms.ReceivedMessage{}
	for _, d := range dead {
		byBody[string(d.Body)] = d
		info := d.DeadLetter
		if info == nil || info.FailureCount != 1 || info.LastFailureReason != dms.FailureByConsumer || info.Time.IsZero() {
			t.Fatalf("dead letter info %+v", info)
		}
	}
	src := msgs[slices.IndexFunc(msgs, func(m *dms.ReceivedMessage) bool { return string(m.Body) == "z" })]
	if info := byBody["z"].DeadLetter; info.SourcePartition != src.Partition || info.SourceOffset != src.Offset || byBody["z"].ID != src.ID {
		t.Fatalf("dead letter of z: %+v, message %+v", info, src)
	}
	// Handles are not interchangeable.
	res, err := p.Ack(ctx, q, "g", byBody["y"].Success())
	if err != nil || res[0].Applied || res[0].Reason != dms.ReasonReceiptHandleKindMismatch {
		t.Fatalf("message ack of a dead letter: %+v, %v", res, err)
	}
	// z is dealt with; x and y go back to the dead-letter queue.
	res, err = p.AckDeadLetters(ctx, q, "g", byBody["z"].Success(), byBody["x"].Fail(), byBody["y"].Fail(), byBody["y"].Redeliver())
	if err != nil || !res[0].Applied || !res[1].Applied || !res[2].Applied || res[3].Applied {
		t.Fatalf("dead-letter acks %+v, %v", res, err)
	}

	// Redrive x by tag, then y by id.
	redriven, err := p.RedriveDeadLetters(ctx, q, "g", dms.RedriveOptions{TagFilter: &dms.TagFilter{Tags: []string{"retry"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(redriven) != 1 || !redriven[0].Redriven || redriven[0].MessageID != byBody["x"].ID {
		t.Fatalf("redrive by tag: %+v", redriven)
	}
	redriven, err = p.RedriveDeadLetters(ctx, q, "g", dms.RedriveOptions{MessageIDs: []string{byBody["y"].ID}, MaxPerSecond: 10, Limit: 5})
	if err != nil || len(redriven) != 1 || !redriven[0].Redriven {
		t.Fatalf("redrive by id: %+v, %v", redriven, err)
	}
	back := receiveAll(t, p, q, "g", 2, dms.ReceiveOptions{})
	if !slices.Equal(bodies(back), []string{"x", "y"}) || back[0].DeliveryCount != 1 || back[0].DeadLetter != nil {
		t.Fatalf("redriven messages %v (%+v)", bodies(back), back)
	}
	ackAll(t, p, q, "g", back)
	s := getGroup(t, p, q, "g").Stats
	if s.Consumed != 3 || s.AvailableDeadLetters != 0 {
		t.Fatalf("stats after the redrive: %+v", s)
	}

	// Queues without dead letters say so.
	plain := newQueue(t, p, dms.QueueConfig{})
	if _, err := p.ReceiveDeadLetters(ctx, plain, "g", dms.ReceiveOptions{}); dms.ReasonOf(err) != dms.ReasonDeadLettersDisabled {
		t.Fatalf("dead letters of a plain queue: %v", err)
	}
	if _, err := p.ReceiveDeadLetters(ctx, q, "g", dms.ReceiveOptions{TagFilter: &dms.TagFilter{Tags: []string{"a"}}}); err == nil {
		t.Fatal("a dead-letter receive took a tag filter")
	}
}

func TestDeadLetterConsumer(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{DeadLetters: true, MaxConsumeCount: 1})
	const n = 20
	sendN(t, p, q, n)
	// The first failure makes each message a dead letter.
	fails := dms.NewConsumer(p, q, "g", func(context.Context, *dms.ReceivedMessage) error {
		return errors.New("poison")
	}, dms.WithWaitTime(time.Second))
	go fails.Run(context.Background())
	eventually(t, 10*time.Second, func() bool { return getGroup(t, p, q, "g").Stats.DeadLetters == n }, "every message dead-lettered")
	fails.Stop()

	var mu sync.Mutex
	seen := map[string]int{}
	c := dms.NewDeadLetterConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		if m.DeadLetter == nil {
			return errors.New("not a dead letter")
		}
		mu.Lock()
		defer mu.Unlock()
		if seen[string(m.Body)]++; seen[string(m.Body)] == 1 && m.Body[0]%2 == 0 {
			return dms.Redeliver(nil) // counts as a plain failure here
		}
		return nil
	}, dms.WithWaitTime(time.Second))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	eventually(t, 15*time.Second, func() bool {
		s := getGroup(t, p, q, "g").Stats
		return s.AvailableDeadLetters == 0
	}, "every dead letter handled")
	c.Stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != n {
		t.Fatalf("handled %d dead letters, want %d", len(seen), n)
	}
	if err := dms.NewDeadLetterConsumer(p, q, "g", nil, dms.WithStreaming()).Run(context.Background()); err == nil {
		t.Fatal("a streaming dead-letter consumer was accepted")
	}
}

func TestSeek(t *testing.T) {
	ctx := ctxTimeout(t, 30*time.Second)
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	sendN(t, p, q, 3)
	ackAll(t, p, q, "g", receiveAll(t, p, q, "g", 3, dms.ReceiveOptions{}))

	positions, err := p.Seek(ctx, q, "g", dms.SeekToEarliest())
	if err != nil {
		t.Fatal(err)
	}
	if len(positions) != 1 || positions[0] != (dms.PartitionOffset{Partition: 0, Offset: 0}) {
		t.Fatalf("positions %+v", positions)
	}
	again := receiveAll(t, p, q, "g", 3, dms.ReceiveOptions{})
	if !slices.Equal(bodies(again), []string{"0", "1", "2"}) {
		t.Fatalf("after seeking to the earliest: %v", bodies(again))
	}
	ackAll(t, p, q, "g", again)

	if _, err := p.Seek(ctx, q, "g", dms.SeekToOffsets(map[int]int64{0: 1})); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, p, q, "g", 3, dms.ReceiveOptions{}); !slices.Equal(bodies(got), []string{"1", "2"}) {
		t.Fatalf("after seeking to offset 1: %v", bodies(got))
	}

	if _, err := p.Seek(ctx, q, "g", dms.SeekToLatest()); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, p, q, "g", 3, dms.ReceiveOptions{}); len(got) != 0 {
		t.Fatalf("after seeking to the latest: %v", bodies(got))
	}

	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	if _, err := p.Send(ctx, q, dms.Message{Body: []byte("new")}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Seek(ctx, q, "g", dms.SeekToTime(mark)); err != nil {
		t.Fatal(err)
	}
	if got := receiveAll(t, p, q, "g", 5, dms.ReceiveOptions{}); !slices.Equal(bodies(got), []string{"new"}) {
		t.Fatalf("after seeking to a time: %v", bodies(got))
	}

	for _, target := range []dms.SeekTarget{{}, dms.SeekToOffsets(map[int]int64{7: 0})} {
		if _, err := p.Seek(ctx, q, "g", target); dms.ReasonOf(err) != dms.ReasonSeekTargetInvalid {
			t.Fatalf("seek to %v: %v, want SEEK_TARGET_INVALID", target, err)
		}
	}
}
