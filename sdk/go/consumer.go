package dms

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Handler processes one message for a Consumer. The outcome settles the
// delivery:
//
//   - nil acks it as a success: the group never gets the message again;
//   - any error acks it as failed (AckFail): the group gets it again at once,
//     with DeliveryCount one higher, and the failure counts toward the
//     queue's MaxConsumeCount when dead letters are enabled.
//
// A panic counts as an error. More outcomes (such as redelivery after a
// delay, once the server offers it) will come as error values or wrappers
// that a Handler returns, so the signature and the meaning of nil and of a
// plain error will not change.
//
// ctx carries the values of the context given to Consumer.Run but is not
// canceled when Run's context is: a stopping consumer lets running handlers
// finish. ctx ends at the message's visibility deadline (VisibleAt), after
// which the ack can no longer be applied and the group gets the message
// again; the server has no call yet to extend a visibility timeout, so a
// handler that may need longer should be given a longer
// WithVisibilityTimeout.
type Handler func(ctx context.Context, m *ReceivedMessage) error

// BatchHandler processes the messages of one receive together, for a
// Consumer made by NewBatchConsumer. nil acks them all as a success; a
// *BatchError settles them one by one; any other error fails them all. ctx is
// as for a Handler, ending at the batch's visibility deadline.
type BatchHandler func(ctx context.Context, msgs []*ReceivedMessage) error

// BatchError is what a BatchHandler returns to settle its messages one by
// one: Errors[i] is the outcome of msgs[i], with the meaning a Handler's
// result has. A BatchError whose length differs from the batch's fails the
// whole batch.
type BatchError struct {
	Errors []error
}

func (e *BatchError) Error() string {
	failed := 0
	var first error
	for _, err := range e.Errors {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if first == nil {
		return "dms: no message of the batch failed"
	}
	return fmt.Sprintf("dms: %d of %d messages failed, the first: %v", failed, len(e.Errors), first)
}

// ackStatusFor maps a handler's outcome to the ack that settles the message.
// New outcomes (redelivery with a delay) will be recognized here with
// errors.As on dedicated error types.
func ackStatusFor(err error) AckStatus {
	if err == nil {
		return AckSuccess
	}
	return AckFail
}

// Consumer receives the messages of a consumer group in a loop and hands them
// to a handler, with a configurable number of handlers running at once, and
// acks each message with the handler's outcome. It long-polls the server
// (WithWaitTime) and asks only for as many messages as it has free handlers,
// so that messages do not wait invisible in the client.
//
// Run runs the loop; it ends when its context is canceled or Stop is called.
// Either way the consumer stops receiving, waits for the running handlers
// and acks what they finished before Run returns. A receive canceled by the
// stop may have been answered by the server already; its messages then come
// back after their visibility timeout.
type Consumer struct {
	project      *Project
	queue, group string
	handler      Handler
	batchHandler BatchHandler
	opts         consumerOptions
	logger       *slog.Logger

	mu       sync.Mutex
	started  bool
	stop     chan struct{}
	stopOnce sync.Once
	finished chan struct{}
}

// ConsumerOption configures a Consumer.
type ConsumerOption func(*consumerOptions)

type consumerOptions struct {
	concurrency int
	batchSize   int
	waitTime    time.Duration
	visibility  time.Duration
	consumerID  string
}

// WithConcurrency sets how many handlers may run at once: messages for a
// Handler, batches for a BatchHandler. Default 10.
func WithConcurrency(n int) ConsumerOption {
	return func(o *consumerOptions) { o.concurrency = n }
}

// WithBatchSize sets the most messages asked for per receive, 1 to
// MaxReceiveMessages: for a BatchHandler the largest batch (default 100); for
// a Handler a cap on top of the free handlers (default MaxReceiveMessages).
func WithBatchSize(n int) ConsumerOption {
	return func(o *consumerOptions) { o.batchSize = n }
}

// WithWaitTime sets how long one receive waits for messages on the server:
// 0 to 60 s, default 20 s. Longer waits mean fewer calls when the queue is
// idle; below 200 ms the consumer pauses that long after an empty receive.
func WithWaitTime(d time.Duration) ConsumerOption {
	return func(o *consumerOptions) { o.waitTime = d }
}

// WithVisibilityTimeout sets how long a received message stays invisible to
// the group's other consumers: 15 s to 300 s; the server's default (30 s)
// when not set. Handlers must finish within it.
func WithVisibilityTimeout(d time.Duration) ConsumerOption {
	return func(o *consumerOptions) { o.visibility = d }
}

// WithConsumerID names this consumer instance in its receives, for
// diagnostics.
func WithConsumerID(id string) ConsumerOption {
	return func(o *consumerOptions) { o.consumerID = id }
}

// NewConsumer returns a Consumer that hands each message of a consumer group
// to h. Queue and group are named by display name or id. Call Run to start.
func NewConsumer(p *Project, queue, group string, h Handler, opts ...ConsumerOption) *Consumer {
	c := newConsumer(p, queue, group, MaxReceiveMessages, opts)
	c.handler = h
	return c
}

// NewBatchConsumer returns a Consumer that hands the messages of each
// receive, up to WithBatchSize, to h together. Call Run to start.
func NewBatchConsumer(p *Project, queue, group string, h BatchHandler, opts ...ConsumerOption) *Consumer {
	c := newConsumer(p, queue, group, 100, opts)
	c.batchHandler = h
	return c
}

func newConsumer(p *Project, queue, group string, batchSize int, opts []ConsumerOption) *Consumer {
	o := consumerOptions{concurrency: 10, batchSize: batchSize, waitTime: 20 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	o.concurrency = max(o.concurrency, 1)
	o.batchSize = min(max(o.batchSize, 1), MaxReceiveMessages)
	return &Consumer{
		project:  p,
		queue:    queue,
		group:    group,
		opts:     o,
		logger:   p.client.logger.With("queue", queue, "group", group),
		stop:     make(chan struct{}),
		finished: make(chan struct{}),
	}
}

// Run receives and handles messages until ctx is canceled or Stop is called,
// then waits for the running handlers, acks their outcomes and returns nil.
// Failures the loop can outlast (the server unreachable or overloaded) are
// logged and retried with backoff; any other failure of a receive (the queue
// or group does not exist, for example) stops the consumer the same way and
// is returned. Run may be called once.
func (c *Consumer) Run(ctx context.Context) error {
	c.mu.Lock()
	if c.started {
		c.mu.Unlock()
		return errors.New("dms: Consumer.Run called twice")
	}
	c.started = true
	c.mu.Unlock()
	defer close(c.finished)

	loopCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-c.stop:
			cancel()
		case <-loopCtx.Done():
		}
	}()

	// Handlers and acks outlive loopCtx: a stop lets them finish.
	handlerBase := context.WithoutCancel(ctx)
	acks := newAcker(c, handlerBase)
	slots := make(chan struct{}, c.opts.concurrency)
	var handlers sync.WaitGroup
	err := c.loop(loopCtx, handlerBase, slots, &handlers, acks)
	handlers.Wait()
	acks.close()
	return err
}

func (c *Consumer) loop(ctx, handlerBase context.Context, slots chan struct{}, handlers *sync.WaitGroup, acks *acker) error {
	retry := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
	failures := 0
	for {
		// Wait for one free handler, then take every other free one, so
		// that a receive asks for no more than can be handled at once.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		// Both may have been ready: a stopped consumer must not receive.
		select {
		case <-ctx.Done():
			<-slots
			return nil
		case <-c.stop:
			<-slots
			return nil
		default:
		}
		batches := c.batchHandler != nil
		want := c.opts.batchSize
		taken := 1
		if !batches {
			for taken < c.opts.batchSize && taken < c.opts.concurrency {
				select {
				case slots <- struct{}{}:
					taken++
					continue
				default:
				}
				break
			}
			want = taken
		}
		msgs, err := c.receive(ctx, want)
		if err != nil {
			release(slots, taken)
			if ctx.Err() != nil {
				return nil
			}
			if !recoverable(err) {
				c.logger.Error("dms: consumer stops: receive failed", "error", err)
				return err
			}
			failures++
			pause := retry.backoff(failures)
			c.logger.Warn("dms: receive failed, retrying", "backoff", pause, "error", err)
			sleep(ctx, pause)
			continue
		}
		failures = 0
		if len(msgs) == 0 && c.opts.waitTime < idlePause {
			// Without a long poll, an idle queue would be asked in a
			// tight loop.
			sleep(ctx, idlePause)
		}
		if batches {
			if len(msgs) == 0 {
				release(slots, taken)
				continue
			}
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer release(slots, 1)
				c.handleBatch(handlerBase, msgs, acks)
			}()
			continue
		}
		release(slots, taken-len(msgs))
		for _, m := range msgs {
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer release(slots, 1)
				c.handleOne(handlerBase, m, acks)
			}()
		}
	}
}

func (c *Consumer) receive(ctx context.Context, n int) ([]*ReceivedMessage, error) {
	// A receive that hangs well past its wait time is given up, so that a
	// connection lost without notice does not stall the loop.
	ctx, cancel := context.WithTimeout(ctx, c.opts.waitTime+30*time.Second)
	defer cancel()
	return c.project.Receive(ctx, c.queue, c.group, ReceiveOptions{
		MaxMessages:       n,
		WaitTime:          c.opts.waitTime,
		VisibilityTimeout: c.opts.visibility,
		ConsumerID:        c.opts.consumerID,
	})
}

// recoverable reports whether the receive loop should retry after err rather
// than stop: the failures that come and go with the server's health.
func recoverable(err error) bool {
	switch CodeOf(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.ResourceExhausted, codes.Aborted, codes.Unknown:
		return true
	}
	return false
}

func release(slots chan struct{}, n int) {
	for range n {
		<-slots
	}
}

func (c *Consumer) handleOne(base context.Context, m *ReceivedMessage, acks *acker) {
	ctx, cancel := context.WithDeadline(base, m.VisibleAt)
	defer cancel()
	err := c.protect(func() error { return c.handler(ctx, m) })
	acks.add(m, ackStatusFor(err))
}

func (c *Consumer) handleBatch(base context.Context, msgs []*ReceivedMessage, acks *acker) {
	ctx, cancel := context.WithDeadline(base, msgs[0].VisibleAt)
	defer cancel()
	err := c.protect(func() error { return c.batchHandler(ctx, msgs) })
	var be *BatchError
	if errors.As(err, &be) && len(be.Errors) != len(msgs) {
		c.logger.Error("dms: batch handler returned a BatchError of the wrong length; failing the batch", "messages", len(msgs), "errors", len(be.Errors))
		be = nil
	}
	for i, m := range msgs {
		outcome := err
		if be != nil {
			outcome = be.Errors[i]
		}
		acks.add(m, ackStatusFor(outcome))
	}
}

// protect runs a handler, turning a panic into an error.
func (c *Consumer) protect(handle func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.logger.Error("dms: handler panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("dms: handler panicked: %v", r)
		}
	}()
	return handle()
}

// Stop stops the consumer as canceling Run's context does and waits until
// Run returned. It may be called more than once, and before Run (which then
// returns at once).
func (c *Consumer) Stop() {
	c.stopOnce.Do(func() { close(c.stop) })
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if started {
		<-c.finished
	}
}

// acker sends the acks of a Consumer's handlers in batches: it takes what has
// piled up while the previous call ran, so that acks coalesce under load
// without a linger time.
type acker struct {
	c    *Consumer
	ctx  context.Context
	ch   chan pendingAck
	done chan struct{}
}

type pendingAck struct {
	ack Ack
	id  string
}

// idlePause is the least time between two receives of a Consumer that came
// back empty.
const idlePause = 200 * time.Millisecond

// ackTimeout bounds one AckMessages call of a Consumer.
const ackTimeout = 10 * time.Second

func newAcker(c *Consumer, ctx context.Context) *acker {
	a := &acker{c: c, ctx: ctx, ch: make(chan pendingAck, MaxAcks), done: make(chan struct{})}
	go a.run()
	return a
}

func (a *acker) add(m *ReceivedMessage, status AckStatus) {
	a.ch <- pendingAck{ack: Ack{ReceiptHandle: m.ReceiptHandle, Status: status}, id: m.ID}
}

// close sends what is pending and waits; no add may follow.
func (a *acker) close() {
	close(a.ch)
	<-a.done
}

func (a *acker) run() {
	defer close(a.done)
	batch := make([]pendingAck, 0, MaxAcks)
	for first := range a.ch {
		batch = append(batch[:0], first)
	more:
		for len(batch) < MaxAcks {
			select {
			case p, ok := <-a.ch:
				if !ok {
					break more
				}
				batch = append(batch, p)
			default:
				break more
			}
		}
		a.send(batch)
	}
}

func (a *acker) send(batch []pendingAck) {
	acks := make([]Ack, len(batch))
	for i, p := range batch {
		acks[i] = p.ack
	}
	retry := RetryPolicy{MaxAttempts: 3, InitialBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(a.ctx, ackTimeout)
		results, err := a.c.project.Ack(ctx, a.c.queue, a.c.group, acks...)
		cancel()
		if err == nil {
			for i, r := range results {
				if !r.Applied {
					a.c.logger.Warn("dms: ack not applied", "message_id", batch[i].id, "status", batch[i].ack.Status, "reason", r.Reason, "error", r.Message)
				}
			}
			return
		}
		if !recoverable(err) || attempt >= retry.MaxAttempts {
			a.c.logger.Error("dms: ack failed; the messages will be delivered again", "messages", len(acks), "attempts", attempt, "error", err)
			return
		}
		sleep(a.ctx, retry.backoff(attempt))
	}
}
