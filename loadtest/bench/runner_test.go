package bench

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// memDriver is an in-memory queue: enough to check the runner's counting,
// phases and reports without a server.
type memDriver struct {
	mu        sync.Mutex
	queue     [][]byte
	acked     int
	skipped   int
	sendDelay time.Duration
	tornDown  bool
}

func (d *memDriver) Setup(context.Context, Workload) (SetupInfo, error) {
	return SetupInfo{System: "memory", Durability: "none", MaxSendBatch: 50}, nil
}
func (d *memDriver) NewProducer(context.Context) (Producer, error) { return memProducer{d}, nil }
func (d *memDriver) NewConsumer(context.Context) (Consumer, error) { return memConsumer{d}, nil }
func (d *memDriver) Teardown(context.Context) error {
	d.tornDown = true
	return nil
}

// SkipBacklog implements BacklogSkipper: what is queued is skipped.
func (d *memDriver) SkipBacklog(context.Context) error {
	d.mu.Lock()
	d.skipped += len(d.queue)
	d.queue = nil
	d.mu.Unlock()
	return nil
}

type memProducer struct{ d *memDriver }

func (p memProducer) Send(ctx context.Context, bodies [][]byte) error {
	sleep(ctx, p.d.sendDelay)
	p.d.mu.Lock()
	defer p.d.mu.Unlock()
	for _, b := range bodies {
		p.d.queue = append(p.d.queue, append([]byte(nil), b...))
	}
	return ctx.Err()
}
func (p memProducer) Close() error { return nil }

type memConsumer struct{ d *memDriver }

func (c memConsumer) Receive(ctx context.Context, max int) ([]Delivery, error) {
	deadline := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		c.d.mu.Lock()
		n := min(max, len(c.d.queue))
		ds := make([]Delivery, n)
		for i := range ds {
			ds[i] = Delivery{Body: c.d.queue[i]}
		}
		c.d.queue = c.d.queue[n:]
		c.d.mu.Unlock()
		if n > 0 {
			return ds, nil
		}
		time.Sleep(time.Millisecond)
	}
	return nil, nil
}

func (c memConsumer) Ack(_ context.Context, ds []Delivery) error {
	c.d.mu.Lock()
	c.d.acked += len(ds)
	c.d.mu.Unlock()
	return nil
}
func (c memConsumer) Close() error { return nil }

func testWorkload(kind Kind) Workload {
	return Workload{
		Kind: kind, MessageSize: 100, Producers: 3, Consumers: 2, Partitions: 1,
		Batch: 100, ReceiveMax: 30, Durability: Sync, Duration: 10 * time.Second,
		Interval: 100 * time.Millisecond,
	}
}

func TestRunCountsExactly(t *testing.T) {
	for _, kind := range []Kind{Produce, EndToEnd} {
		t.Run(string(kind), func(t *testing.T) {
			d := &memDriver{sendDelay: time.Millisecond}
			w := testWorkload(kind)
			w.Messages = 1234
			w.Warmup = 50 * time.Millisecond
			res, err := Run(context.Background(), "mem", d, w, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !d.tornDown {
				t.Error("driver not torn down")
			}
			if !res.Complete || res.Sent != w.Messages || res.Publish.Count != w.Messages {
				t.Fatalf("complete %v, sent %d (%d latencies), want %d", res.Complete, res.Sent, res.Publish.Count, w.Messages)
			}
			if res.Batch != 50 || !strings.Contains(strings.Join(res.Notes, ";"), "batch lowered to 50") {
				t.Errorf("batch %d, notes %q: want it lowered to the driver's 50", res.Batch, res.Notes)
			}
			if kind == EndToEnd {
				// Warm-up messages are consumed too but not measured; every
				// message sent was consumed before the run ended.
				if res.Received < w.Messages || res.EndToEnd == nil || res.EndToEnd.Count != res.Received {
					t.Errorf("received %d with %+v e2e samples, want at least %d", res.Received, res.EndToEnd, w.Messages)
				}
				if int64(d.acked) < res.Received || len(d.queue) != 0 {
					t.Errorf("%d acked and %d left in the queue", d.acked, len(d.queue))
				}
			}
		})
	}
}

func TestRunConsumeDrainsBacklog(t *testing.T) {
	d := &memDriver{}
	w := testWorkload(Consume)
	w.Backlog = 5000
	var progress bytes.Buffer
	res, err := Run(context.Background(), "mem", d, w, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != w.Backlog || res.Sent != 0 || res.EndToEnd != nil {
		t.Errorf("received %d, sent %d, e2e %+v: want the backlog of %d drained and no e2e latency", res.Received, res.Sent, res.EndToEnd, w.Backlog)
	}
	if !strings.Contains(progress.String(), "backlog of 5000 messages ready") {
		t.Errorf("progress does not tell about the backlog:\n%s", progress.String())
	}
}

func TestRunTopMeasuresEmptyThenAtTheTop(t *testing.T) {
	d := &memDriver{}
	w := testWorkload(Top)
	w.Messages, w.Backlog = 2000, 7000
	var progress bytes.Buffer
	res, err := Run(context.Background(), "mem", d, w, &progress)
	if err != nil {
		t.Fatal(err)
	}
	empty := res.EmptyQueue
	if empty == nil || empty.Driver != "mem (empty)" {
		t.Fatalf("empty-queue run %+v", empty)
	}
	for _, r := range []*Result{empty, res} {
		if !r.Complete || r.Sent != w.Messages || r.Received != w.Messages || r.Stale != 0 || r.EndToEnd == nil {
			t.Errorf("%s: complete %v, sent %d, received %d, e2e %+v; want %d each way", r.Driver, r.Complete, r.Sent, r.Received, r.EndToEnd, w.Messages)
		}
	}
	// The backlog was skipped whole, and nothing else was.
	if d.skipped != int(w.Backlog) || res.Backlog == nil || res.Backlog.Messages != w.Backlog {
		t.Errorf("skipped %d, backlog stats %+v; want the backlog of %d", d.skipped, res.Backlog, w.Backlog)
	}
	s := &Scenario{Workload: res.Workload, Results: []*Result{res}}
	var table bytes.Buffer
	s.WriteTable(&table)
	for _, want := range []string{"mem (empty)", "top of the backlog / empty queue", "  mem: received ", "backlog: 7000 messages sent"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestRunTopNeedsASkipper(t *testing.T) {
	w := testWorkload(Top)
	w.Backlog = 10
	_, err := Run(context.Background(), "plain", struct{ Driver }{&memDriver{}}, w, nil)
	if err == nil || !strings.Contains(err.Error(), "cannot be consumed from the top of a backlog") {
		t.Fatalf("err = %v, want the driver refused", err)
	}
}

func TestRunHoldsTheRate(t *testing.T) {
	d := &memDriver{}
	w := testWorkload(Produce)
	// 2000 messages at 2000 msg/s: pacing may not send them faster (that
	// bound holds however busy the machine is); slower only means a busy
	// machine, so the run just has to finish within its generous limit.
	w.Rate, w.Messages, w.Duration, w.Linger = 2000, 2000, time.Minute, 5*time.Millisecond
	res, err := Run(context.Background(), "mem", d, w, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Complete || res.Sent != w.Messages {
		t.Fatalf("complete %v, sent %d; want all %d sent", res.Complete, res.Sent, w.Messages)
	}
	if res.SendRate > 2300 {
		t.Errorf("send rate %.0f msg/s, want at most about 2000", res.SendRate)
	}
}

func TestReportTableAndRatios(t *testing.T) {
	w := testWorkload(EndToEnd)
	w.Name = "e2e-test"
	lat := &Latency{Count: 10, P50: 1, P99: 2, P999: 3, Max: 4}
	s := &Scenario{Workload: w, Results: []*Result{
		{Driver: "dms-grpc", Workload: w, SendRate: 2000, RecvRate: 2000, Publish: lat, EndToEnd: lat, Complete: true,
			Setup: SetupInfo{System: "DMS", Durability: "fsync before ack"}},
		{Driver: "nats", Workload: w, SendRate: 1000, RecvRate: 1000, EndToEnd: &Latency{P99: 4}, Complete: true},
		{Driver: "kafka", Workload: w, Skipped: "connection refused"},
	}}
	var out bytes.Buffer
	s.WriteTable(&out)
	for _, want := range []string{"dms-grpc / nats: throughput 2.00x, e2e p99 0.50x", "kafka: skipped: connection refused", "fsync before ack"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	var svg bytes.Buffer
	if err := s.WriteSVG(&svg); err != nil || !strings.Contains(svg.String(), "kafka (skipped)") {
		t.Errorf("svg: %v\n%s", err, svg.String())
	}
}

func TestStampRoundTrip(t *testing.T) {
	b := make([]byte, 16)
	now := time.Now()
	Stamp(b, now)
	if got, ok := SentAt(b); !ok || !got.Equal(time.Unix(0, now.UnixNano())) {
		t.Errorf("SentAt = %v, %v; want %v", got, ok, now)
	}
	if _, ok := SentAt(b[:7]); ok {
		t.Error("SentAt of 7 bytes is ok")
	}
}
