package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is one driver's outcome of one workload.
type Result struct {
	Driver   string    `json:"driver"`
	Workload Workload  `json:"workload"`
	Setup    SetupInfo `json:"setup"`
	// Skipped says why the driver did not run (its system was not reachable,
	// say); the other fields are then empty.
	Skipped string    `json:"skipped,omitempty"`
	Started time.Time `json:"started"`
	// Batch and ReceiveMax are the ones used, after the system's limits.
	Batch      int `json:"batch"`
	ReceiveMax int `json:"receive_max"`

	Sent        int64      `json:"sent"`
	Received    int64      `json:"received"`
	SendSeconds float64    `json:"send_seconds"`
	RecvSeconds float64    `json:"recv_seconds"`
	SendRate    float64    `json:"send_msgs_per_s"`
	RecvRate    float64    `json:"recv_msgs_per_s"`
	SendMBps    float64    `json:"send_mb_per_s"`
	RecvMBps    float64    `json:"recv_mb_per_s"`
	Publish     *Latency   `json:"publish_latency,omitempty"`
	EndToEnd    *Latency   `json:"e2e_latency,omitempty"`
	Server      *ProcStats `json:"server,omitempty"`
	Client      *ProcStats `json:"client,omitempty"`
	Errors      int64      `json:"errors"`
	// Stale counts deliveries of messages sent before the run began: never
	// more than 0 unless the system redelivered, or, in a top workload,
	// failed to skip the backlog.
	Stale      int64    `json:"stale,omitempty"`
	FirstError string   `json:"first_error,omitempty"`
	Notes      []string `json:"notes,omitempty"`
	Series     []Point  `json:"series"`
	// Backlog says how sending the prepared backlog went (Consume and Top).
	// For a Top workload EmptyQueue is the same workload measured on the
	// empty queue, before the backlog; this result is the run at its top.
	EmptyQueue *Result       `json:"empty_queue,omitempty"`
	Backlog    *BacklogStats `json:"backlog,omitempty"`
	// Complete is false when a count-mode run hit its time limit before every
	// message was sent and consumed.
	Complete bool `json:"complete"`
}

// BacklogStats describes the sending of a prepared backlog.
type BacklogStats struct {
	Messages int64      `json:"messages"`
	Seconds  float64    `json:"seconds"`
	SendRate float64    `json:"send_msgs_per_s"`
	SendMBps float64    `json:"send_mb_per_s"`
	Server   *ProcStats `json:"server,omitempty"`
}

// Run runs workload w against driver d and returns its result. progress, when
// not nil, gets one line per interval. The driver is torn down before Run
// returns.
func Run(ctx context.Context, name string, d Driver, w Workload, progress io.Writer) (res *Result, err error) {
	if err := w.Validate(); err != nil {
		return nil, err
	}
	res = &Result{Driver: name, Workload: w, Started: time.Now(), Batch: w.Batch, ReceiveMax: w.ReceiveMax}
	if progress == nil {
		progress = io.Discard
	}
	skipper, canSkip := d.(BacklogSkipper)
	if w.Kind == Top && !canSkip {
		return nil, fmt.Errorf("%s: its queues cannot be consumed from the top of a backlog", name)
	}

	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	info, err := d.Setup(setupCtx, w)
	cancel()
	defer func() {
		tctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if terr := d.Teardown(tctx); terr != nil {
			err = errors.Join(err, fmt.Errorf("%s: teardown: %w", name, terr))
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("%s: setup: %w", name, err)
	}
	res.Setup = info
	res.Notes = append(res.Notes, info.Notes...)
	if info.MaxSendBatch > 0 && res.Batch > info.MaxSendBatch {
		res.Batch = info.MaxSendBatch
		res.Notes = append(res.Notes, fmt.Sprintf("batch lowered to %d, the most one send takes", res.Batch))
	}
	if info.MaxReceiveBatch > 0 && res.ReceiveMax > info.MaxReceiveBatch {
		res.ReceiveMax = info.MaxReceiveBatch
		res.Notes = append(res.Notes, fmt.Sprintf("receive-max lowered to %d, the most one receive returns", res.ReceiveMax))
	}

	r := &run{name: name, w: w, res: res, progress: progress, rec: newRecorder(w.Kind != Consume)}
	defer r.close()
	if err := r.open(ctx, d); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	switch w.Kind {
	case Consume:
		stats, err := r.prepareBacklog(ctx, info.ServerPID)
		res.Backlog = stats
		if err != nil {
			return nil, fmt.Errorf("%s: preparing the backlog: %w", name, err)
		}
	case Top:
		if err := r.measureEmptyThenFill(ctx, d, skipper, info.ServerPID); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	r.measure(ctx, info.ServerPID)
	return res, nil
}

// measureEmptyThenFill does what a Top workload does before its measured run
// at the top of the backlog: it measures the same workload on the empty
// queue, stores the backlog behind it and moves the consumer group past the
// backlog with new consumers.
func (r *run) measureEmptyThenFill(ctx context.Context, d Driver, skipper BacklogSkipper, serverPID int) error {
	empty := *r.res
	empty.Driver = r.name + " (empty)"
	empty.Notes = slices.Clone(r.res.Notes)
	er := &run{name: empty.Driver, w: r.w, res: &empty, progress: r.progress, rec: newRecorder(true),
		producers: r.producers, consumers: r.consumers}
	er.measure(ctx, serverPID)
	r.res.EmptyQueue = &empty
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// The consumers go first: a streaming one would otherwise be handed
	// backlog messages while nobody reads it.
	for _, c := range r.consumers {
		_ = c.Close()
	}
	r.consumers = nil
	stats, err := r.prepareBacklog(ctx, serverPID)
	r.res.Backlog = stats
	if err != nil {
		return fmt.Errorf("preparing the backlog: %w", err)
	}
	if err := skipper.SkipBacklog(ctx); err != nil {
		return fmt.Errorf("moving the consumer group past the backlog: %w", err)
	}
	r.rec = newRecorder(true) // counts a backlog message received from now on as stale
	return r.openConsumers(ctx, d)
}

// run is the state of one Run.
type run struct {
	name      string
	w         Workload
	res       *Result
	progress  io.Writer
	rec       *recorder
	producers []Producer
	consumers []Consumer
	// budget is what is left to send of w.Messages while measuring; nil in
	// duration mode.
	budget *atomic.Int64
}

func (r *run) open(ctx context.Context, d Driver) error {
	producers := r.w.Producers
	if r.w.Kind == Consume {
		producers = max(1, r.w.Producers) // they prepare the backlog
	}
	for range producers {
		p, err := d.NewProducer(ctx)
		if err != nil {
			return fmt.Errorf("new producer: %w", err)
		}
		r.producers = append(r.producers, p)
	}
	if r.w.Kind.consumes() {
		return r.openConsumers(ctx, d)
	}
	return nil
}

func (r *run) openConsumers(ctx context.Context, d Driver) error {
	for range r.w.Consumers {
		c, err := d.NewConsumer(ctx)
		if err != nil {
			return fmt.Errorf("new consumer: %w", err)
		}
		r.consumers = append(r.consumers, c)
	}
	return nil
}

func (r *run) close() {
	for _, p := range r.producers {
		_ = p.Close()
	}
	for _, c := range r.consumers {
		_ = c.Close()
	}
}

// newBodies makes one producer's reusable batch of bodies: stamp space and
// then printable filler, so that text-only wire formats can carry it too.
func newBodies(batch, size int) [][]byte {
	bodies := make([][]byte, batch)
	for i := range bodies {
		b := make([]byte, size)
		for j := StampSize; j < size; j++ {
			b[j] = 'a' + byte(j%26)
		}
		bodies[i] = b
	}
	return bodies
}

// prepareBacklog sends w.Backlog messages with every producer, unmeasured,
// and says how fast that went and what the server (serverPID, when known)
// used meanwhile.
func (r *run) prepareBacklog(ctx context.Context, serverPID int) (*BacklogStats, error) {
	var left atomic.Int64
	left.Store(r.w.Backlog)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, p := range r.producers {
		wg.Go(func() {
			bodies := newBodies(r.res.Batch, r.w.MessageSize)
			for ctx.Err() == nil {
				n := claim(&left, r.res.Batch)
				if n == 0 {
					return
				}
				now := time.Now()
				for _, b := range bodies[:n] {
					Stamp(b, now)
				}
				if err := p.Send(ctx, bodies[:n]); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	ticker := time.NewTicker(r.w.Interval)
	defer ticker.Stop()
	server := newProcSampler(serverPID)
	start := time.Now()
	for {
		select {
		case <-done:
			seconds := time.Since(start).Seconds()
			fmt.Fprintf(r.progress, "%-18s backlog of %d messages ready in %.1fs\n", r.name, r.w.Backlog, seconds)
			stats := &BacklogStats{Messages: r.w.Backlog, Seconds: seconds, Server: server.stats()}
			if seconds > 0 {
				stats.SendRate = float64(r.w.Backlog) / seconds
				stats.SendMBps = stats.SendRate * float64(r.w.MessageSize) / 1e6
			}
			return stats, firstErr
		case <-ticker.C:
			server.sample()
			sent := r.w.Backlog - max(0, left.Load())
			line := fmt.Sprintf("%-18s preparing backlog %d/%d  %.0f msg/s", r.name, sent, r.w.Backlog, float64(sent)/time.Since(start).Seconds())
			if server.ok {
				line += fmt.Sprintf("  server RSS %.0f MiB", server.rssEnd)
			}
			fmt.Fprintln(r.progress, line)
		}
	}
}

// claim takes up to n from left and returns how many it took.
func claim(left *atomic.Int64, n int) int {
	for {
		have := left.Load()
		if have <= 0 {
			return 0
		}
		take := min(have, int64(n))
		if left.CompareAndSwap(have, have-take) {
			return int(take)
		}
	}
}

func (r *run) produce(ctx context.Context, p Producer) {
	batch := r.res.Batch
	bodies := newBodies(batch, r.w.MessageSize)
	rate := r.w.Rate / float64(len(r.producers)) // messages/s of this producer
	start := time.Now()
	var paced int64 // messages this producer has sent, for pacing
	for ctx.Err() == nil {
		n := batch
		if rate > 0 {
			// Send what is due; when less than a batch is due, wait for the
			// batch to fill, but no longer than the linger after the oldest
			// due message.
			elapsed := time.Since(start).Seconds()
			due := int64(elapsed*rate) - paced
			if due < int64(batch) {
				oldestDue := float64(paced+1) / rate
				full := float64(paced+int64(batch)) / rate
				deadline := min(full, oldestDue+r.w.Linger.Seconds())
				if elapsed < deadline || due <= 0 {
					sleep(ctx, time.Duration((deadline-elapsed)*float64(time.Second)))
					continue
				}
			}
			n = int(min(due, int64(batch)))
		}
		measured := r.rec.measuring.Load()
		if measured && r.budget != nil {
			if n = claim(r.budget, n); n == 0 {
				return
			}
		}
		now := time.Now()
		for _, b := range bodies[:n] {
			Stamp(b, now)
		}
		err := p.Send(ctx, bodies[:n])
		latency := time.Since(now)
		if err != nil {
			if measured && r.budget != nil {
				r.budget.Add(int64(n)) // not sent: someone sends it again
			}
			if ctx.Err() != nil {
				return
			}
			r.rec.error(err)
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		paced += int64(n)
		r.rec.recordSent(n, latency, measured)
	}
}

func (r *run) consume(ctx context.Context, c Consumer) {
	for ctx.Err() == nil {
		ds, err := c.Receive(ctx, r.res.ReceiveMax)
		at := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.rec.error(err)
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		if len(ds) == 0 {
			continue
		}
		measured := r.rec.measuring.Load()
		if err := c.Ack(ctx, ds); err != nil {
			if ctx.Err() != nil {
				return
			}
			r.rec.error(err)
			continue
		}
		r.rec.recordReceived(ds, at, measured)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// measure runs the producers and consumers through warm-up and the measured
// window and fills the result.
func (r *run) measure(ctx context.Context, serverPID int) {
	w := r.w
	if w.Messages > 0 && w.Kind != Consume {
		r.budget = new(atomic.Int64)
		r.budget.Store(w.Messages)
	}
	server := newProcSampler(serverPID)
	client := newProcSampler(os.Getpid())

	start := time.Now()
	var measureStart time.Time
	// Draining a backlog is measured from its start: preparing the backlog
	// warmed the server up.
	if w.Warmup <= 0 || w.Kind == Consume {
		r.rec.startMeasuring()
		measureStart = start
	}
	runCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	prodCtx, stopProducers := context.WithCancel(runCtx)
	defer stopProducers()
	var producing, consuming sync.WaitGroup
	producersDone := make(chan struct{})
	if w.Kind.sends() {
		for _, p := range r.producers {
			producing.Go(func() { r.produce(prodCtx, p) })
		}
	}
	go func() { producing.Wait(); close(producersDone) }()
	for _, c := range r.consumers {
		consuming.Go(func() { r.consume(runCtx, c) })
	}

	ticker := time.NewTicker(min(w.Interval, 100*time.Millisecond))
	defer ticker.Stop()
	nextLine := start.Add(w.Interval)
	var drainStart time.Time // count mode: when producers finished
	complete := true
loop:
	for {
		select {
		case <-ctx.Done():
			complete = false
			break loop
		case <-ticker.C:
		}
		now := time.Now()
		if measureStart.IsZero() {
			if now.Sub(start) >= w.Warmup {
				r.rec.startMeasuring()
				server.reset()
				client.reset()
				measureStart = now
				nextLine = now.Add(w.Interval)
				r.rec.mu.Lock()
				r.rec.lastIntervalAt = now
				r.rec.mu.Unlock()
			} else if now.After(nextLine) {
				nextLine = nextLine.Add(w.Interval)
				p := r.rec.interval(now.Sub(start))
				r.printProgress(p, "warm-up ")
			}
			continue
		}
		if now.After(nextLine) {
			nextLine = nextLine.Add(w.Interval)
			p := r.rec.interval(now.Sub(measureStart))
			r.res.Series = append(r.res.Series, p)
			server.sample()
			client.sample()
			r.printProgress(p, "")
		}
		elapsed := now.Sub(measureStart)
		if r.finished(producersDone, &drainStart, now) {
			break
		}
		if elapsed >= w.Duration && w.Messages == 0 {
			break
		}
		if w.Messages > 0 && (elapsed >= w.Duration || (!drainStart.IsZero() && now.Sub(drainStart) >= w.DrainLimit)) {
			complete = false
			r.res.Notes = append(r.res.Notes, "time limit reached before every message was sent and consumed")
			break
		}
	}
	stopProducers()
	producing.Wait()
	stopConsumers()
	consuming.Wait()
	end := time.Now()
	if measureStart.IsZero() {
		measureStart = end
	}
	// The last, partial interval when it is long enough to mean something,
	// or when a run shorter than an interval has no point to plot yet.
	if last := nextLine.Add(-w.Interval); len(r.res.Series) == 0 || end.Sub(last) >= w.Interval/2 {
		r.res.Series = append(r.res.Series, r.rec.interval(end.Sub(measureStart)))
	}

	rec := r.rec
	rec.mu.Lock()
	defer rec.mu.Unlock()
	res := r.res
	res.Complete = complete
	res.Sent, res.Received = rec.sent, rec.recv
	res.SendSeconds = windowSeconds(measureStart, rec.lastSend, end, w.Messages > 0)
	res.RecvSeconds = windowSeconds(measureStart, rec.lastRecv, end, w.Messages > 0 || w.Kind == Consume)
	if res.SendSeconds > 0 {
		res.SendRate = float64(res.Sent) / res.SendSeconds
		res.SendMBps = res.SendRate * float64(w.MessageSize) / 1e6
	}
	if res.RecvSeconds > 0 {
		res.RecvRate = float64(res.Received) / res.RecvSeconds
		res.RecvMBps = res.RecvRate * float64(w.MessageSize) / 1e6
	}
	res.Publish = latencyOf(rec.pub)
	if rec.withE2E {
		res.EndToEnd = latencyOf(rec.e2e)
	}
	res.Server = server.stats()
	res.Client = client.stats()
	res.Errors = rec.errors.Load()
	res.Stale = rec.stale
	if e := rec.firstError.Load(); e != nil {
		res.FirstError = *e
	}
}

// finished tells whether a run has done all it had to: in count mode, every
// message sent (and consumed); for a consume workload, the backlog drained.
func (r *run) finished(producersDone <-chan struct{}, drainStart *time.Time, now time.Time) bool {
	switch {
	case r.w.Kind == Consume:
		return r.rec.recvAll.Load() >= r.w.Backlog
	case r.w.Messages == 0:
		return false
	}
	select {
	case <-producersDone:
	default:
		return false
	}
	if drainStart.IsZero() {
		*drainStart = now
	}
	return r.w.Kind == Produce || r.rec.recvAll.Load() >= r.rec.sentAll.Load()
}

// windowSeconds is how long a measured window lasted: up to the end of the
// run, or up to the last measured event when the run ended on a count.
func windowSeconds(start, last, end time.Time, byCount bool) float64 {
	if byCount && !last.IsZero() && last.After(start) {
		end = last
	}
	return end.Sub(start).Seconds()
}

func (r *run) printProgress(p Point, phase string) {
	line := fmt.Sprintf("%-18s %s%5.0fs  sent %8.0f msg/s  recv %8.0f msg/s", r.name, phase, p.T, p.SendRate, p.RecvRate)
	if p.PubP99 > 0 {
		line += fmt.Sprintf("  pub p50 %s p99 %s", fmtMs(p.PubP50), fmtMs(p.PubP99))
	}
	if p.E2EP99 > 0 {
		line += fmt.Sprintf("  e2e p50 %s p99 %s", fmtMs(p.E2EP50), fmtMs(p.E2EP99))
	}
	if r.w.Kind.endToEnd() {
		line += fmt.Sprintf("  backlog %d", r.rec.sentAll.Load()-r.rec.recvAll.Load())
	}
	if n := r.rec.errors.Load(); n > 0 {
		line += fmt.Sprintf("  errors %d", n)
	}
	fmt.Fprintln(r.progress, line)
}

// fmtMs writes milliseconds with sensible precision.
func fmtMs(ms float64) string {
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fms", ms)
}
