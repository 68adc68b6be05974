package dms_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

func TestSubscribeConsumesEveryMessageOnce(t *testing.T) {
	const n = 3000
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 3})
	sendN(t, p, q, n)

	var failures atomic.Int32
	sub, err := p.Subscribe(ctxTimeout(t, 60*time.Second), q, "g", dms.SubscribeOptions{
		Credits:      50,
		OnAckFailure: func(f dms.AckFailure) { failures.Add(1); t.Logf("ack failed: %+v", f) },
	})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	outstanding := 0
	maxOutstanding := 0
	var pending []dms.Ack
	deadline := time.After(30 * time.Second)
	for len(seen) < n {
		select {
		case m, ok := <-sub.Messages():
			if !ok {
				t.Fatalf("the subscription ended after %d messages: %v", len(seen), sub.Err())
			}
			seen[string(m.Body)]++
			outstanding++
			maxOutstanding = max(maxOutstanding, outstanding)
			// Ack in small groups, as an application finishing work
			// would.
			pending = append(pending, m.Success())
			if len(pending) == 7 || len(seen) == n {
				if err := sub.Ack(pending...); err != nil {
					t.Fatal(err)
				}
				outstanding -= len(pending)
				pending = nil
			}
		case <-deadline:
			t.Fatalf("got %d of %d messages", len(seen), n)
		}
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	for body, count := range seen {
		if count != 1 {
			t.Fatalf("message %s came %d times", body, count)
		}
	}
	if maxOutstanding > 50 {
		t.Fatalf("%d messages were outstanding, more than the 50 credits", maxOutstanding)
	}
	if failures.Load() != 0 {
		t.Fatalf("%d acks failed", failures.Load())
	}
	if dms.RangeAcksSent(sub) == 0 {
		t.Fatal("consecutive successes were not acked as ranges")
	}
	if _, ok := <-sub.Messages(); ok {
		t.Fatal("Messages delivers after Close")
	}
	if err := sub.Ack(dms.Ack{ReceiptHandle: "x"}); !errors.Is(err, dms.ErrSubscriptionClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	waitForStats(t, p, q, dms.GroupStats{Produced: n, Consumed: n})
}

func TestSubscriptionCloseGivesBackWhatNobodyTook(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 1})
	sendN(t, p, q, 10)
	sub, err := p.Subscribe(context.Background(), q, "g", dms.SubscribeOptions{Credits: 10, TagFilter: nil})
	if err != nil {
		t.Fatal(err)
	}
	var first *dms.ReceivedMessage
	select {
	case first = <-sub.Messages():
	case <-time.After(10 * time.Second):
		t.Fatal("no message")
	}
	// The others arrive in the same response; wait until they are buffered.
	eventually(t, 5*time.Second, func() bool { return len(sub.Messages()) == 9 }, "nine buffered messages")
	if err := sub.Ack(first.Fail(), first.Success()); err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	// The nine come back at once, counted; so does the failed one (the
	// success after the fail came too late).
	again := receiveAll(t, p, q, "g", 10, dms.ReceiveOptions{})
	if len(again) != 10 || again[0].DeliveryCount != 2 {
		t.Fatalf("got %d messages back (%+v)", len(again), again)
	}
}

func TestSubscribeReportsAMissingGroupAndAConflictingFilter(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	sub, err := p.Subscribe(ctxTimeout(t, 10*time.Second), q, "nobody", dms.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := <-sub.Messages(); ok {
		t.Fatal("a subscription of a missing group delivered")
	}
	if dms.ReasonOf(sub.Err()) != dms.ReasonGroupNotFound || dms.ReasonOf(sub.Close()) != dms.ReasonGroupNotFound {
		t.Fatalf("Err = %v, want GROUP_NOT_FOUND", sub.Err())
	}

	if _, err := p.Receive(ctxTimeout(t, 10*time.Second), q, "g", dms.ReceiveOptions{TagFilter: &dms.TagFilter{Tags: []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	sendN(t, p, q, 1) // a stream reports the conflict on its first receive
	sub, err = p.Subscribe(ctxTimeout(t, 10*time.Second), q, "g", dms.SubscribeOptions{TagFilter: &dms.TagFilter{Tags: []string{"b"}}})
	if err != nil {
		t.Fatal(err)
	}
	for range sub.Messages() {
		t.Fatal("a subscription with a conflicting filter delivered")
	}
	if dms.ReasonOf(sub.Err()) != dms.ReasonTagFilterConflict {
		t.Fatalf("Err = %v, want TAG_FILTER_CONFLICT", sub.Err())
	}
}

func TestStreamingConsumer(t *testing.T) {
	const n = 500
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 3})
	sendN(t, p, q, n)

	var (
		mu      sync.Mutex
		counts  = map[string][]int{}
		ok      = 0
		allDone = make(chan struct{})
	)
	c := dms.NewConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		mu.Lock()
		defer mu.Unlock()
		counts[string(m.Body)] = append(counts[string(m.Body)], m.DeliveryCount)
		if m.Body[len(m.Body)-1] == '3' && m.DeliveryCount == 1 {
			return errors.New("once more")
		}
		if ok++; ok == n {
			close(allDone)
		}
		return nil
	}, dms.WithStreaming(), dms.WithConcurrency(8), dms.WithCredits(64))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	select {
	case <-allDone:
	case <-time.After(30 * time.Second):
		t.Fatal("not every message was handled")
	}
	c.Stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		want := "[1]"
		if i%10 == 3 {
			want = "[1 2]"
		}
		if got := fmt.Sprint(counts[fmt.Sprint(i)]); got != want {
			t.Errorf("message %d: delivery counts %s, want %s", i, got, want)
		}
	}
	waitForStats(t, p, q, dms.GroupStats{Produced: n, Consumed: n})
}

func TestStreamingBatchConsumerStopsWhenTheGroupIsMissing(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	c := dms.NewBatchConsumer(p, q, "nobody", func(context.Context, []*dms.ReceivedMessage) error { return nil }, dms.WithStreaming())
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	select {
	case err := <-done:
		if dms.ReasonOf(err) != dms.ReasonGroupNotFound {
			t.Fatalf("Run = %v, want GROUP_NOT_FOUND", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

func TestStreamingBatchConsumer(t *testing.T) {
	const n = 200
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{Partitions: 2})
	sendN(t, p, q, n)
	var got atomic.Int32
	allDone := make(chan struct{})
	c := dms.NewBatchConsumer(p, q, "g", func(ctx context.Context, msgs []*dms.ReceivedMessage) error {
		if len(msgs) > 16 {
			return fmt.Errorf("batch of %d", len(msgs))
		}
		if got.Add(int32(len(msgs))) == n {
			close(allDone)
		}
		return nil
	}, dms.WithStreaming(), dms.WithBatchSize(16), dms.WithConcurrency(2))
	go c.Run(context.Background())
	select {
	case <-allDone:
	case <-time.After(20 * time.Second):
		t.Fatalf("handled %d of %d", got.Load(), n)
	}
	c.Stop()
	waitForStats(t, p, q, dms.GroupStats{Produced: n, Consumed: n})
}

// The consume benchmarks compare the Consumer over unary receives and acks
// with the Consumer over a Subscription, on a backlog of 1 KiB messages in
// a queue of 3 partitions, with the same handler concurrency; the handler
// does nothing, so the figure is what the client and server can move:
//
//	go test -run '^$' -bench BenchmarkConsume -benchtime 20000x
func BenchmarkConsumeUnary(b *testing.B) {
	for _, n := range []int{32, 256} {
		b.Run(fmt.Sprintf("concurrency=%d", n), func(b *testing.B) {
			benchmarkConsume(b, dms.WithConcurrency(n))
		})
	}
}

func BenchmarkConsumeStreaming(b *testing.B) {
	for _, n := range []int{32, 256} {
		b.Run(fmt.Sprintf("concurrency=%d", n), func(b *testing.B) {
			benchmarkConsume(b, dms.WithConcurrency(n), dms.WithStreaming(), dms.WithCredits(1000))
		})
	}
}

func benchmarkConsume(b *testing.B, opts ...dms.ConsumerOption) {
	p := newProject(b)
	q := newQueue(b, p, dms.QueueConfig{Partitions: 3})
	body := []byte(strings.Repeat("x", 1024))
	batch := make([]dms.Message, dms.MaxBatchMessages)
	for i := range batch {
		batch[i] = dms.Message{Body: body}
	}
	for sent := 0; sent < b.N; sent += len(batch) {
		if _, err := p.Send(context.Background(), q, batch[:min(len(batch), b.N-sent)]...); err != nil {
			b.Fatal(err)
		}
	}
	var handled atomic.Int64
	done := make(chan struct{})
	opts = append([]dms.ConsumerOption{dms.WithWaitTime(time.Second)}, opts...)
	c := dms.NewConsumer(p, q, "g", func(context.Context, *dms.ReceivedMessage) error {
		if handled.Add(1) == int64(b.N) {
			close(done)
		}
		return nil
	}, opts...)
	b.SetBytes(1024)
	b.ResetTimer()
	start := time.Now()
	go c.Run(context.Background())
	<-done
	elapsed := time.Since(start)
	c.Stop() // sends the last acks
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
