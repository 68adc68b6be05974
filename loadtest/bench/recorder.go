package bench

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds from 1 µs to 10 minutes with 3
// significant digits.
const (
	histLowest  = 1
	histHighest = int64(10 * time.Minute / time.Microsecond)
	histDigits  = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowest, histHighest, histDigits)
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func latencyOf(h *hdrhistogram.Histogram) *Latency {
	if h.TotalCount() == 0 {
		return nil
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return &Latency{
		Count: h.TotalCount(),
		Mean:  h.Mean() / 1000,
		P50:   ms(h.ValueAtQuantile(50)),
		P99:   ms(h.ValueAtQuantile(99)),
		P999:  ms(h.ValueAtQuantile(99.9)),
		Max:   ms(h.Max()),
	}
}

// Point is one interval of a run's time series.
type Point struct {
	T        float64 `json:"t_s"` // end of the interval, seconds since measuring started
	SendRate float64 `json:"send_msgs_per_s"`
	RecvRate float64 `json:"recv_msgs_per_s"`
	PubP50   float64 `json:"publish_p50_ms,omitempty"`
	PubP99   float64 `json:"publish_p99_ms,omitempty"`
	E2EP50   float64 `json:"e2e_p50_ms,omitempty"`
	E2EP99   float64 `json:"e2e_p99_ms,omitempty"`
}

// recorder collects what producers and consumers report. Producers and
// consumers report once per batch, so one mutex is cheap enough.
type recorder struct {
	measuring  atomic.Bool
	sentAll    atomic.Int64 // acknowledged sends, warm-up included
	recvAll    atomic.Int64 // acked receives, warm-up included
	errors     atomic.Int64
	firstError atomic.Pointer[string]
	withE2E    bool // e2e latency means something (not for a prepared backlog)
	// created is when the recorder was made: a delivery stamped earlier was
	// sent before its run began (a backlog the consumer group should have
	// skipped) and is counted in stale.
	created time.Time
	stale   int64

	mu             sync.Mutex
	pub, e2e       *hdrhistogram.Histogram // the measured window
	ipub, ie2e     *hdrhistogram.Histogram // the current interval
	sent, recv     int64                   // measured
	isent, irecv   int64                   // this interval (measured or not)
	lastSend       time.Time               // when the last measured send was acknowledged
	lastRecv       time.Time               // when the last measured receive was acked
	lastIntervalAt time.Time
}

func newRecorder(withE2E bool) *recorder {
	return &recorder{
		withE2E: withE2E,
		created: time.Now(),
		pub:     newHistogram(), e2e: newHistogram(),
		ipub: newHistogram(), ie2e: newHistogram(),
		lastIntervalAt: time.Now(),
	}
}

func (r *recorder) startMeasuring() {
	r.mu.Lock()
	r.ipub.Reset()
	r.ie2e.Reset()
	r.isent, r.irecv = 0, 0
	r.lastIntervalAt = time.Now()
	r.mu.Unlock()
	r.measuring.Store(true)
}

func (r *recorder) error(err error) {
	if r.errors.Add(1) == 1 {
		msg := err.Error()
		r.firstError.Store(&msg)
	}
}

// recordSent records an acknowledged batch of n messages that took latency;
// measured says whether the batch was sent while measuring.
func (r *recorder) recordSent(n int, latency time.Duration, measured bool) {
	r.sentAll.Add(int64(n))
	us := max(latency.Microseconds(), histLowest)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.isent += int64(n)
	_ = r.ipub.RecordValues(us, int64(n))
	if measured {
		r.sent += int64(n)
		_ = r.pub.RecordValues(us, int64(n))
		r.lastSend = time.Now()
	}
}

// recordReceived records acked deliveries that arrived at at.
func (r *recorder) recordReceived(ds []Delivery, at time.Time, measured bool) {
	r.recvAll.Add(int64(len(ds)))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.irecv += int64(len(ds))
	if measured {
		r.recv += int64(len(ds))
		r.lastRecv = time.Now()
	}
	if !r.withE2E {
		return
	}
	for _, d := range ds {
		sentAt, ok := SentAt(d.Body)
		if !ok {
			continue
		}
		if sentAt.Before(r.created) {
			r.stale++
		}
		us := min(max(at.Sub(sentAt).Microseconds(), histLowest), histHighest)
		_ = r.ie2e.RecordValue(us)
		if measured {
			_ = r.e2e.RecordValue(us)
		}
	}
}

// interval closes the current interval and returns it as a point at t.
func (r *recorder) interval(t time.Duration) Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	secs := now.Sub(r.lastIntervalAt).Seconds()
	r.lastIntervalAt = now
	p := Point{T: t.Seconds()}
	if secs > 0 {
		p.SendRate = float64(r.isent) / secs
		p.RecvRate = float64(r.irecv) / secs
	}
	if r.ipub.TotalCount() > 0 {
		p.PubP50 = float64(r.ipub.ValueAtQuantile(50)) / 1000
		p.PubP99 = float64(r.ipub.ValueAtQuantile(99)) / 1000
	}
	if r.ie2e.TotalCount() > 0 {
		p.E2EP50 = float64(r.ie2e.ValueAtQuantile(50)) / 1000
		p.E2EP99 = float64(r.ie2e.ValueAtQuantile(99)) / 1000
	}
	r.isent, r.irecv = 0, 0
	r.ipub.Reset()
	r.ie2e.Reset()
	return p
}
