package dms

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// ErrProducerClosed is the error of a message given to a closed Producer.
var ErrProducerClosed = errors.New("dms: producer closed")

// Producer sends messages to one queue in batches. Messages handed to
// SendAsync by any number of goroutines are coalesced into SendMessages calls
// of up to WithMaxBatchMessages messages and WithMaxBatchBytes bytes; a batch
// is sent when it is full, when its linger time passed, or on Flush and
// Close. At most WithMaxInFlight calls run at once; while they all run,
// messages keep collecting, so batches grow under load even with no linger.
//
// A call that fails with Unavailable or DeadlineExceeded is retried with
// exponential backoff (see WithRetryPolicy). Every batch carries an
// idempotence key (the producer's random id and the batch's number), so a
// retry of a batch the server stored but could not answer returns the first
// attempt's results instead of storing it twice, as long as the first
// attempt is among the last 100000 messages of its partition.
//
// With WithMaxInFlight(1) the messages of one goroutine are stored in the
// order it handed them over; with more calls in flight, batches can overtake
// one another.
//
// A Producer is safe for concurrent use. Close it to send what is buffered
// and release its goroutines.
type Producer struct {
	// id and batches make each batch's idempotence key.
	id      string
	batches atomic.Uint64

	client *Client
	queue  string // resource name
	opts   producerOptions
	logger *slog.Logger

	budget *budget
	slots  chan struct{} // one token per call in flight

	// ctx is the context of the calls; canceled when Close gives up.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	cur      *batch          // collecting messages
	full     []*batch        // sealed, waiting for a call slot
	inflight map[*batch]bool // handed to a call
	flushing int             // Flush calls waiting: send cur at once
	closed   bool
	wake     chan struct{} // tells the dispatcher that something changed

	done     chan struct{}  // closed when the dispatcher has handed over everything
	sends    sync.WaitGroup // running calls
	stopped  chan struct{}  // closed when everything is settled after Close
	stopOnce sync.Once
}

type batch struct {
	msgs     []*dmsv1.Message
	futures  []*SendFuture
	bytes    int       // message bytes as the server counts them
	weight   int64     // buffer budget held
	deadline time.Time // end of the linger time
	err      error     // set before done is closed
	done     chan struct{}
}

// ProducerOption configures a Producer.
type ProducerOption func(*producerOptions)

type producerOptions struct {
	linger           time.Duration
	maxBatchMessages int
	maxBatchBytes    int
	maxInFlight      int
	maxBufferedBytes int64
	sendTimeout      time.Duration
	retry            RetryPolicy
}

// WithLinger sets how long a batch waits for more messages once it has its
// first, while a call slot is free; default 5 ms. Zero sends whenever a slot
// is free.
func WithLinger(d time.Duration) ProducerOption {
	return func(o *producerOptions) { o.linger = d }
}

// WithMaxBatchMessages sets the most messages per call; default and maximum
// MaxBatchMessages.
func WithMaxBatchMessages(n int) ProducerOption {
	return func(o *producerOptions) { o.maxBatchMessages = n }
}

// WithMaxBatchBytes sets the most bytes of messages per call, as
// Message.Size counts them; default and maximum MaxBatchBytes. A message
// larger than this is sent alone.
func WithMaxBatchBytes(n int) ProducerOption {
	return func(o *producerOptions) { o.maxBatchBytes = n }
}

// WithMaxInFlight sets how many calls may run at once; default 4.
func WithMaxInFlight(n int) ProducerOption {
	return func(o *producerOptions) { o.maxInFlight = n }
}

// WithMaxBufferedBytes bounds the memory held by messages handed over and
// not yet settled; default 64 MiB. SendAsync waits while the buffer is full.
func WithMaxBufferedBytes(n int64) ProducerOption {
	return func(o *producerOptions) { o.maxBufferedBytes = n }
}

// WithSendTimeout bounds each SendMessages call; default 30 s. A call that
// times out is retried, and may store its messages twice.
func WithSendTimeout(d time.Duration) ProducerOption {
	return func(o *producerOptions) { o.sendTimeout = d }
}

// WithRetryPolicy sets how calls failing with Unavailable or DeadlineExceeded
// are retried. Without it a call is made up to 10 times, with pauses from
// 100 ms doubling up to 2 s: about 10 s of retries in all.
func WithRetryPolicy(r RetryPolicy) ProducerOption {
	return func(o *producerOptions) { o.retry = r }
}

// NewProducer returns a Producer for a queue of the project, named by display
// name or id. It starts a goroutine that runs until Close.
func NewProducer(p *Project, queue string, opts ...ProducerOption) *Producer {
	o := producerOptions{
		linger:           5 * time.Millisecond,
		maxBatchMessages: MaxBatchMessages,
		maxBatchBytes:    MaxBatchBytes,
		maxInFlight:      4,
		maxBufferedBytes: 64 << 20,
		sendTimeout:      30 * time.Second,
		retry:            defaultRetryPolicy,
	}
	for _, opt := range opts {
		opt(&o)
	}
	o.maxBatchMessages = max(o.maxBatchMessages, 1)
	o.maxBatchBytes = max(o.maxBatchBytes, 1)
	o.maxInFlight = max(o.maxInFlight, 1)
	o.maxBufferedBytes = max(o.maxBufferedBytes, int64(o.maxBatchBytes))
	o.retry.MaxAttempts = max(o.retry.MaxAttempts, 1)
	ctx, cancel := context.WithCancel(context.Background())
	pr := &Producer{
		id:       randomID(),
		client:   p.client,
		queue:    p.queueResource(queue),
		opts:     o,
		logger:   p.client.logger.With("queue", p.queueResource(queue)),
		budget:   newBudget(o.maxBufferedBytes),
		slots:    make(chan struct{}, o.maxInFlight),
		ctx:      ctx,
		cancel:   cancel,
		inflight: make(map[*batch]bool),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	go pr.dispatch()
	return pr
}

// SendFuture is the pending outcome of a message given to SendAsync.
type SendFuture struct {
	done chan struct{}
	fn   func(SendResult, error)
	res  SendResult
	err  error
}

// Done is closed once the outcome is known.
func (f *SendFuture) Done() <-chan struct{} { return f.done }

// Wait waits for the outcome, or for ctx to be done. An error from the server
// is an *Error; ErrProducerClosed means the message was given after Close.
func (f *SendFuture) Wait(ctx context.Context) (SendResult, error) {
	select {
	case <-f.done:
		return f.res, f.err
	case <-ctx.Done():
		return SendResult{}, ctx.Err()
	}
}

func (f *SendFuture) resolve(res SendResult, err error) {
	f.res, f.err = res, err
	if f.fn != nil {
		f.fn(res, err)
	}
	if f.done != nil {
		close(f.done)
	}
}

// SendAsync hands a message to the producer and returns at once with its
// future, unless the buffer is full (WithMaxBufferedBytes): then it waits for
// room, and gives up with ctx.Err() in the future when ctx is done first. ctx
// bounds only that wait, not the send. The message's Body is not copied:
// leave it alone until the future is done.
func (p *Producer) SendAsync(ctx context.Context, msg Message) *SendFuture {
	f := &SendFuture{done: make(chan struct{})}
	p.enqueue(ctx, msg, f)
	return f
}

// SendAsyncFunc is SendAsync with a callback instead of a future, which
// saves an allocation per message. fn is called exactly once with the
// outcome: on the goroutine that sent the message's batch, after the call,
// with the batch's other callbacks one after the other; or at once on the
// caller's goroutine when the message is refused before it is buffered. It
// must be quick, and must not call Flush or Close, which wait for it.
func (p *Producer) SendAsyncFunc(ctx context.Context, msg Message, fn func(SendResult, error)) {
	p.enqueue(ctx, msg, &SendFuture{fn: fn})
}

func (p *Producer) enqueue(ctx context.Context, msg Message, f *SendFuture) {
	pm, err := msg.toProto()
	if err != nil {
		f.resolve(SendResult{}, err)
		return
	}
	size := msg.Size()
	weight := p.budget.weight(size)
	if !p.budget.tryAcquire(weight) {
		// Waiting for the linger time of the collecting batch would only
		// make the wait longer: send it now.
		p.mu.Lock()
		if p.cur != nil {
			p.sealLocked()
		}
		p.mu.Unlock()
		if err := p.budget.acquire(ctx, weight); err != nil {
			f.resolve(SendResult{}, err)
			return
		}
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.budget.release(weight)
		f.resolve(SendResult{}, ErrProducerClosed)
		return
	}
	defer p.mu.Unlock()
	if b := p.cur; b != nil && (len(b.msgs) >= p.opts.maxBatchMessages || b.bytes+size > p.opts.maxBatchBytes) {
		p.sealLocked()
	}
	if p.cur == nil {
		p.cur = &batch{deadline: time.Now().Add(p.opts.linger), done: make(chan struct{})}
		p.wakeDispatcher() // it needs the new deadline
	}
	b := p.cur
	b.msgs = append(b.msgs, pm)
	b.futures = append(b.futures, f)
	b.bytes += size
	b.weight += weight
	if len(b.msgs) >= p.opts.maxBatchMessages || b.bytes >= p.opts.maxBatchBytes {
		p.sealLocked()
	}
}

func (p *Producer) sealLocked() {
	p.full = append(p.full, p.cur)
	p.cur = nil
	p.wakeDispatcher()
}

func (p *Producer) wakeDispatcher() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// dispatch hands batches to calls as call slots free up, until Close and
// everything is handed over.
func (p *Producer) dispatch() {
	defer close(p.done)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		p.slots <- struct{}{}
		b := p.next(timer)
		if b == nil {
			<-p.slots
			return
		}
		p.sends.Add(1)
		go p.send(b)
	}
}

// next waits for the next batch to send: a full one, or the collecting one
// once its linger time passed or a Flush or Close wants it. It returns nil
// when the producer is closed and nothing is left.
func (p *Producer) next(timer *time.Timer) *batch {
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		if len(p.full) > 0 {
			b := p.full[0]
			p.full[0] = nil
			p.full = p.full[1:]
			p.inflight[b] = true
			return b
		}
		if b := p.cur; b != nil {
			if p.closed || p.flushing > 0 || !time.Now().Before(b.deadline) {
				p.cur = nil
				p.inflight[b] = true
				return b
			}
			timer.Reset(time.Until(b.deadline))
		} else if p.closed {
			return nil
		}
		p.mu.Unlock()
		select {
		case <-p.wake:
		case <-timer.C:
		}
		timer.Stop()
		p.mu.Lock()
	}
}

// send makes the call of one batch, with retries, and settles its futures.
func (p *Producer) send(b *batch) {
	defer p.sends.Done()
	// The same request, key included, goes out on every retry.
	req := &dmsv1.SendMessagesRequest{Queue: p.queue, Messages: b.msgs, IdempotenceKey: fmt.Sprintf("%s/%d", p.id, p.batches.Add(1))}
	var err error
	for attempt := 1; ; attempt++ {
		var resp *dmsv1.SendMessagesResponse
		resp, err = p.call(req)
		if err == nil {
			if results := resp.GetResults(); len(results) == len(b.futures) {
				for i, f := range b.futures {
					r := results[i]
					f.resolve(SendResult{MessageID: r.GetMessageId(), Partition: int(r.GetPartition()), Offset: r.GetOffset()}, nil)
				}
				break
			}
			err = fmt.Errorf("dms: the server answered %d results for %d messages", len(resp.GetResults()), len(b.futures))
		}
		if !IsRetryable(err) || attempt >= p.opts.retry.MaxAttempts || p.ctx.Err() != nil {
			p.logger.Warn("dms: send failed", "messages", len(b.msgs), "attempts", attempt, "error", err)
			for _, f := range b.futures {
				f.resolve(SendResult{}, err)
			}
			break
		}
		pause := p.opts.retry.backoff(attempt)
		p.logger.Info("dms: send failed, retrying", "messages", len(b.msgs), "attempt", attempt, "backoff", pause, "error", err)
		if !sleep(p.ctx, pause) {
			err = fromRPC(p.ctx, p.ctx.Err())
		}
	}
	b.err = err
	p.budget.release(b.weight)
	p.mu.Lock()
	delete(p.inflight, b)
	p.mu.Unlock()
	<-p.slots
	close(b.done)
}

func (p *Producer) call(req *dmsv1.SendMessagesRequest) (*dmsv1.SendMessagesResponse, error) {
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.sendTimeout)
	defer cancel()
	resp, err := p.client.prod.SendMessages(ctx, req)
	// The producer's own context, not the per-call timeout, decides whether
	// the failure is final: a timed-out call is worth a retry.
	return resp, fromRPC(p.ctx, err)
}

// Flush sends every message handed over before the call without waiting for
// linger times, and waits until all of them are settled or ctx is done. It
// returns the error of a batch that could not be sent, if any; each message's
// own outcome is in its future or callback.
func (p *Producer) Flush(ctx context.Context) error {
	p.mu.Lock()
	wait := make([]*batch, 0, len(p.inflight)+len(p.full)+1)
	for b := range p.inflight {
		wait = append(wait, b)
	}
	wait = append(wait, p.full...)
	if p.cur != nil {
		wait = append(wait, p.cur)
	}
	p.flushing++
	p.wakeDispatcher()
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.flushing--
		p.mu.Unlock()
	}()
	var first error
	for _, b := range wait {
		select {
		case <-b.done:
			if first == nil && b.err != nil {
				first = b.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

// Close stops taking messages (SendAsync then fails with ErrProducerClosed),
// sends what is buffered and waits until every message is settled. If ctx is
// done first, Close cancels the calls still running or waiting, whose
// messages then fail with code Canceled, and returns ctx.Err(). Close may be
// called more than once.
func (p *Producer) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.wakeDispatcher()
	p.mu.Unlock()
	p.stopOnce.Do(func() {
		go func() {
			<-p.done
			p.sends.Wait()
			p.cancel()
			close(p.stopped)
		}()
	})
	select {
	case <-p.stopped:
		return nil
	case <-ctx.Done():
		p.cancel()
		<-p.stopped
		return ctx.Err()
	}
}

// randomID returns 16 random bytes in hex: a producer's id in its
// idempotence keys.
func randomID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
