package dms_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	dms "github.com/opendms/dms/sdk/go"
)

// sendRecorder watches the SendMessages calls of a client. It can fail the
// first calls with Unavailable before they reach the server, and hold calls
// at a gate, to exercise retries and back pressure against the real server.
type sendRecorder struct {
	mu       sync.Mutex
	calls    int   // calls that reached the server
	sizes    []int // messages per call
	failNext int   // calls still to fail
	gate     chan struct{}
}

func (r *sendRecorder) option() dms.Option {
	return dms.WithDialOptions(grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		send, ok := req.(*dmsv1.SendMessagesRequest)
		if !ok {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		r.mu.Lock()
		gate := r.gate
		if r.failNext > 0 {
			r.failNext--
			r.mu.Unlock()
			return status.Error(codes.Unavailable, "injected by the test")
		}
		r.calls++
		r.sizes = append(r.sizes, len(send.GetMessages()))
		r.mu.Unlock()
		if gate != nil {
			<-gate
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}))
}

func (r *sendRecorder) stats() (calls int, sizes []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]int(nil), r.sizes...)
}

// drain receives and acks messages of group "g" until n arrived, then
// checks that no more come, and returns how often each body arrived.
func drain(t *testing.T, p *dms.Project, queue string, n int) map[string]int {
	t.Helper()
	ctx := ctxTimeout(t, 30*time.Second)
	seen := make(map[string]int, n)
	total := 0
	for total < n {
		msgs, err := p.Receive(ctx, queue, "g", dms.ReceiveOptions{MaxMessages: dms.MaxReceiveMessages, WaitTime: 5 * time.Second})
		if err != nil {
			t.Fatalf("receive after %d of %d messages: %v", total, n, err)
		}
		if len(msgs) == 0 {
			t.Fatalf("no more messages after %d of %d", total, n)
		}
		acks := make([]dms.Ack, len(msgs))
		for i, m := range msgs {
			seen[string(m.Body)]++
			acks[i] = m.Success()
		}
		total += len(msgs)
		results, err := p.Ack(ctx, queue, "g", acks...)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range results {
			if !r.Applied {
				t.Fatalf("ack not applied: %s %s", r.Reason, r.Message)
			}
		}
	}
	extra, err := p.Receive(ctx, queue, "g", dms.ReceiveOptions{WaitTime: 200 * time.Millisecond})
	if err != nil || len(extra) != 0 {
		t.Fatalf("after all %d messages: %d more, %v", n, len(extra), err)
	}
	return seen
}

func TestProducerCoalescesManyGoroutines(t *testing.T) {
	const goroutines, perGoroutine = 16, 250
	rec := &sendRecorder{}
	p := newProject(t, rec.option())
	q := newQueue(t, p, dms.QueueConfig{})
	prod := dms.NewProducer(p, q)
	ctx := ctxTimeout(t, 30*time.Second)

	futures := make([][]*dms.SendFuture, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				futures[g] = append(futures[g], prod.SendAsync(ctx, dms.Message{Body: fmt.Appendf(nil, "%d-%d", g, i)}))
			}
		})
	}
	wg.Wait()
	ids := make(map[string]bool)
	for _, fs := range futures {
		for _, f := range fs {
			res, err := f.Wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if res.MessageID == "" || ids[res.MessageID] {
				t.Fatalf("message id %q missing or repeated", res.MessageID)
			}
			ids[res.MessageID] = true
		}
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}
	calls, sizes := rec.stats()
	const n = goroutines * perGoroutine
	t.Logf("%d messages in %d calls", n, calls)
	if calls > n/10 {
		t.Fatalf("%d messages took %d calls: the producer did not batch", n, calls)
	}
	for _, s := range sizes {
		if s > dms.MaxBatchMessages {
			t.Fatalf("a call carried %d messages", s)
		}
	}

	seen := drain(t, p, q, n)
	for g := range goroutines {
		for i := range perGoroutine {
			if c := seen[fmt.Sprintf("%d-%d", g, i)]; c != 1 {
				t.Fatalf("message %d-%d arrived %d times", g, i, c)
			}
		}
	}
}

func TestProducerRespectsBatchLimits(t *testing.T) {
	tests := []struct {
		name    string
		opts    []dms.ProducerOption
		body    int
		maxSize int
	}{
		{"messages", []dms.ProducerOption{dms.WithMaxBatchMessages(7)}, 10, 7},
		{"bytes", []dms.ProducerOption{dms.WithMaxBatchBytes(4096)}, 1024, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &sendRecorder{}
			p := newProject(t, rec.option())
			q := newQueue(t, p, dms.QueueConfig{})
			prod := dms.NewProducer(p, q, append(tt.opts, dms.WithLinger(50*time.Millisecond))...)
			ctx := ctxTimeout(t, 20*time.Second)
			var mu sync.Mutex
			done := 0
			for i := range 50 {
				body := make([]byte, tt.body)
				copy(body, fmt.Sprint(i))
				prod.SendAsyncFunc(ctx, dms.Message{Body: body}, func(_ dms.SendResult, err error) {
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					done++
					mu.Unlock()
				})
			}
			if err := prod.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			if done != 50 {
				t.Fatalf("%d callbacks after Flush, want 50", done)
			}
			mu.Unlock()
			_, sizes := rec.stats()
			for _, s := range sizes {
				if s > tt.maxSize {
					t.Fatalf("a call carried %d messages, want at most %d (calls: %v)", s, tt.maxSize, sizes)
				}
			}
			if err := prod.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if len(drain(t, p, q, 50)) != 50 {
				t.Fatal("messages missing")
			}
		})
	}
}

func TestProducerRetriesUnavailable(t *testing.T) {
	rec := &sendRecorder{failNext: 2}
	p := newProject(t, rec.option())
	q := newQueue(t, p, dms.QueueConfig{})
	prod := dms.NewProducer(p, q, dms.WithRetryPolicy(dms.RetryPolicy{MaxAttempts: 5, InitialBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}))
	ctx := ctxTimeout(t, 20*time.Second)
	var fs []*dms.SendFuture
	for i := range 10 {
		fs = append(fs, prod.SendAsync(ctx, dms.Message{Body: fmt.Append(nil, i)}))
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if calls, _ := rec.stats(); calls != 1 {
		t.Fatalf("%d calls reached the server, want 1 after 2 injected failures", calls)
	}
	if len(drain(t, p, q, 10)) != 10 {
		t.Fatal("messages missing")
	}
}

func TestProducerGivesUpOnPermanentErrors(t *testing.T) {
	rec := &sendRecorder{}
	p := newProject(t, rec.option())
	prod := dms.NewProducer(p, "missing", dms.WithLinger(0))
	ctx := ctxTimeout(t, 20*time.Second)
	f := prod.SendAsync(ctx, dms.Message{Body: []byte("x")})
	if _, err := f.Wait(ctx); dms.ReasonOf(err) != dms.ReasonQueueNotFound {
		t.Fatalf("got %v, want QUEUE_NOT_FOUND", err)
	}
	if err := prod.Flush(ctx); err != nil {
		t.Fatalf("Flush after the failure settled: %v", err)
	}
	prod.SendAsync(ctx, dms.Message{Body: []byte("y")})
	if err := prod.Flush(ctx); dms.ReasonOf(err) != dms.ReasonQueueNotFound {
		t.Fatalf("Flush = %v, want QUEUE_NOT_FOUND", err)
	}
	if calls, _ := rec.stats(); calls != 2 {
		t.Fatalf("%d calls, want 2: no retries of a permanent error", calls)
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestProducerCloseSendsWhatIsBuffered(t *testing.T) {
	p := newProject(t)
	q := newQueue(t, p, dms.QueueConfig{})
	prod := dms.NewProducer(p, q, dms.WithLinger(time.Hour))
	ctx := ctxTimeout(t, 20*time.Second)
	f := prod.SendAsync(ctx, dms.Message{Body: []byte("buffered")})
	select {
	case <-f.Done():
		t.Fatal("sent before the linger time")
	default:
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := prod.SendAsync(ctx, dms.Message{Body: []byte("late")}).Wait(ctx); !errors.Is(err, dms.ErrProducerClosed) {
		t.Fatalf("SendAsync after Close: %v", err)
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if drain(t, p, q, 1)["buffered"] != 1 {
		t.Fatal("buffered message missing")
	}
}

func TestProducerBackPressure(t *testing.T) {
	rec := &sendRecorder{gate: make(chan struct{})}
	p := newProject(t, rec.option())
	q := newQueue(t, p, dms.QueueConfig{})
	prod := dms.NewProducer(p, q, dms.WithMaxBatchBytes(1000), dms.WithMaxBufferedBytes(1000), dms.WithMaxInFlight(1))
	ctx := ctxTimeout(t, 20*time.Second)
	first := prod.SendAsync(ctx, dms.Message{Body: make([]byte, 900)})

	// The buffer is full until the held call completes: the next message
	// waits for room, and gives up when its context ends.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := prod.SendAsync(short, dms.Message{Body: make([]byte, 900)}).Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a wait for room that times out", err)
	}
	// SendAsync itself waits for room, so this one returns only once the
	// gate opens.
	secondc := make(chan *dms.SendFuture)
	go func() { secondc <- prod.SendAsync(ctx, dms.Message{Body: make([]byte, 900)}) }()
	select {
	case <-secondc:
		t.Fatal("SendAsync did not wait for room")
	case <-time.After(100 * time.Millisecond):
	}
	close(rec.gate)
	for _, f := range []*dms.SendFuture{first, <-secondc} {
		if _, err := f.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := prod.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkProducer measures 1 KiB messages through a Producer with default
// options, handed over by GOMAXPROCS goroutines, against the test server:
// msgs/s counts messages stored (durable) per second, Close included.
func BenchmarkProducer(b *testing.B) {
	p := newProject(b)
	q := newQueue(b, p, dms.QueueConfig{})
	prod := dms.NewProducer(p, q)
	body := make([]byte, 1024)
	ctx := context.Background()
	var failed atomic.Int64
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			prod.SendAsyncFunc(ctx, dms.Message{Body: body}, func(_ dms.SendResult, err error) {
				if err != nil {
					failed.Add(1)
				}
			})
		}
	})
	if err := prod.Close(ctx); err != nil {
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d sends failed", n)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}
