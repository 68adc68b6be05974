package dms_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

// sendN sends n messages with bodies "0" to "n-1".
func sendN(t *testing.T, p *dms.Project, queue string, n int) {
	t.Helper()
	msgs := make([]dms.Message, n)
	for i := range msgs {
		msgs[i] = dms.Message{Body: fmt.Append(nil, i)}
	}
	for len(msgs) > 0 {
		k := min(len(msgs), dms.MaxBatchMessages)
		if _, err := p.Send(ctxTimeout(t, 10*time.Second), queue, msgs[:k]...); err != nil {
			t.Fatal(err)
		}
		msgs = msgs[k:]
	}
}

// waitForStats polls the group's counts until they are as wanted.
func waitForStats(t *testing.T, p *dms.Project, queue string, want dms.GroupStats) {
	t.Helper()
	var last dms.GroupStats
	eventually(t, 10*time.Second, func() bool {
		g, err := p.GetGroup(context.Background(), queue, "g")
		if err != nil {
			t.Fatal(err)
		}
		last = g.Stats
		return last == want
	}, "group stats %+v, want %+v", &last, want)
}

func TestConsumerRedeliversFailedMessages(t *testing.T) {
	const n = 100
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	sendN(t, p, q, n)

	var (
		mu        sync.Mutex
		counts    = map[string][]int{} // body → delivery counts seen
		succeeded = 0
		allDone   = make(chan struct{})
	)
	c := dms.NewConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		mu.Lock()
		defer mu.Unlock()
		body := string(m.Body)
		counts[body] = append(counts[body], m.DeliveryCount)
		var i int
		fmt.Sscan(body, &i)
		if i%3 == 0 && m.DeliveryCount == 1 {
			return errors.New("try again")
		}
		if i%7 == 0 && m.DeliveryCount == 1 {
			panic("handler bug")
		}
		if succeeded++; succeeded == n {
			close(allDone)
		}
		return nil
	}, dms.WithConcurrency(8), dms.WithWaitTime(time.Second))

	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	select {
	case <-allDone:
	case <-time.After(20 * time.Second):
		t.Fatal("not every message was handled successfully")
	}
	c.Stop()
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	for i := range n {
		got := counts[fmt.Sprint(i)]
		want := []int{1}
		if i%3 == 0 || i%7 == 0 {
			want = []int{1, 2}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("message %d: delivery counts %v, want %v", i, got, want)
		}
	}
	waitForStats(t, p, q, dms.GroupStats{Produced: n, Consumed: n})
}

func TestBatchConsumerSettlesMessagesOneByOne(t *testing.T) {
	const n = 30
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	sendN(t, p, q, n)

	var (
		mu       sync.Mutex
		acked    = map[string]bool{}
		maxBatch = 0
		seen2    = 0
		allDone  = make(chan struct{})
		once     sync.Once
	)
	c := dms.NewBatchConsumer(p, q, "g", func(ctx context.Context, msgs []*dms.ReceivedMessage) error {
		mu.Lock()
		defer mu.Unlock()
		maxBatch = max(maxBatch, len(msgs))
		errs := make([]error, len(msgs))
		for i, m := range msgs {
			if m.DeliveryCount == 1 && m.Body[len(m.Body)-1]%2 == 0 {
				errs[i] = errors.New("even: once more")
				continue
			}
			if m.DeliveryCount == 2 {
				seen2++
			}
			acked[string(m.Body)] = true
		}
		if len(acked) == n {
			once.Do(func() { close(allDone) })
		}
		return &dms.BatchError{Errors: errs}
	}, dms.WithBatchSize(8), dms.WithConcurrency(2), dms.WithWaitTime(time.Second))

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(ctx) }()
	select {
	case <-allDone:
	case <-time.After(20 * time.Second):
		t.Fatal("not every message was handled successfully")
	}
	cancel() // stopping through the context works like Stop
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxBatch > 8 {
		t.Fatalf("a batch had %d messages, want at most 8", maxBatch)
	}
	if seen2 != 15 {
		t.Fatalf("%d messages came back, want the 15 failed ones", seen2)
	}
	waitForStats(t, p, q, dms.GroupStats{Produced: n, Consumed: n})
}

func TestConsumerStopWaitsForHandlersAndAcksThem(t *testing.T) {
	const n = 4
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	sendN(t, p, q, n)

	started := make(chan struct{}, n)
	release := make(chan struct{})
	var finished atomic.Int32
	c := dms.NewConsumer(p, q, "g", func(ctx context.Context, m *dms.ReceivedMessage) error {
		started <- struct{}{}
		<-release
		finished.Add(1)
		return nil
	}, dms.WithConcurrency(n), dms.WithWaitTime(time.Second))
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(context.Background()) }()
	for range n {
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers did not start")
		}
	}

	stopped := make(chan struct{})
	go func() {
		c.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned while handlers were running")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop did not return after the handlers finished")
	}
	if err := <-runErr; err != nil {
		t.Fatal(err)
	}
	if finished.Load() != n {
		t.Fatalf("%d handlers finished, want %d", finished.Load(), n)
	}
	// Acked, not merely in flight.
	waitForStats(t, p, q, dms.GroupStats{Produced: n, Consumed: n})
	c.Stop() // a second Stop is harmless
}

func TestConsumerStopsWhenTheGroupIsMissing(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	c := dms.NewConsumer(p, q, "nobody", func(context.Context, *dms.ReceivedMessage) error { return nil })
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
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("a second Run was accepted")
	}
}

func TestConsumerStoppedBeforeRun(t *testing.T) {
	p := newProject(t)
	c := dms.NewConsumer(p, "q", "g", func(context.Context, *dms.ReceivedMessage) error { return nil })
	c.Stop()
	if err := c.Run(ctxTimeout(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
}
