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
//   - an error made by Redeliver acks it with AckRedeliver: the group gets
//     the message again only after the server's retry delay (30 s by
//     default, growing with each failed attempt along the server's
//     schedule), with DeliveryCount one higher;
//   - any other error acks it as failed (AckFail): the group gets it again
//     at once, with DeliveryCount one higher.
//
// Either failure counts toward the queue's MaxConsumeCount when dead letters
// are enabled: the last allowed failure makes the message a dead letter.
// A panic counts as a plain error. A broadcast consumer with auto-ack has
// nothing to settle: its handler's outcome is only logged.
//
// ctx carries the values of the context given to Consumer.Run but is not
// canceled when Run's context is: a stopping consumer lets running handlers
// finish. While a handler runs, the consumer extends its message's
// visibility (ChangeVisibility, every two thirds of the visibility timeout),
// so a slow handler keeps its message; ctx ends only if an extension fails
// because the delivery expired, after which the ack can no longer be applied
// and the group gets the message again. WithoutVisibilityExtension turns
// this off; then ctx ends at the message's visibility deadline (VisibleAt).
// Dead letters are not extended.
type Handler func(ctx context.Context, m *ReceivedMessage) error

// BatchHandler processes the messages of one receive together, for a
// Consumer made by NewBatchConsumer. nil acks them all as a success; a
// *BatchError settles them one by one; an error made by Redeliver redelivers
// them all; any other error fails them all. ctx is as for a Handler, ending
// at the batch's visibility deadline.
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

// RedeliverError is the outcome of a handler that wants its message tried
// again later rather than at once; make it with Redeliver. Use errors.As to
// recognize it.
type RedeliverError struct {
	// Err is why the message could not be processed now; may be nil.
	Err error
}

func (e *RedeliverError) Error() string {
	if e.Err == nil {
		return "dms: redeliver later"
	}
	return "dms: redeliver later: " + e.Err.Error()
}

// Unwrap returns Err.
func (e *RedeliverError) Unwrap() error { return e.Err }

// Redeliver wraps err as the outcome of a Handler (or an entry of a
// BatchError) that acks the message with AckRedeliver: it comes back to the
// group only after the server's retry delay (30 s by default; the schedule
// is set on the server with -delivery.retry-delays), instead of at once as
// with a plain error. Use it for failures that need time to clear, such as
// a dependency that is down or rate limiting. A dead-letter consumer treats
// it as a plain error, since dead letters cannot be redelivered.
func Redeliver(err error) error { return &RedeliverError{Err: err} }

// ackStatusFor maps a handler's outcome to the ack that settles the message.
func ackStatusFor(err error) AckStatus {
	if err == nil {
		return AckSuccess
	}
	var r *RedeliverError
	if errors.As(err, &r) {
		return AckRedeliver
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
//
// With WithStreaming the consumer uses one Subscription instead of receive
// calls: the server pushes messages as credits allow and acks travel on the
// same stream, which takes fewer round trips per message. On a stop it
// gives the messages it holds beyond the running handlers back to the group
// at once (acked as failed, which counts as a delivery, as an expired
// visibility timeout would). A consumer made by NewDeadLetterConsumer
// handles a group's dead letters instead of its messages.
type Consumer struct {
	project      *Project
	queue, group string
	handler      Handler
	batchHandler BatchHandler
	deadLetters  bool
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
	tagFilter   *TagFilter
	broadcast   *Broadcast
	streaming   bool
	credits     int
	noExtension bool
}

// WithoutVisibilityExtension stops the consumer from extending the
// visibility of messages whose handler runs long: a handler then has until
// the message's visibility deadline.
func WithoutVisibilityExtension() ConsumerOption {
	return func(o *consumerOptions) { o.noExtension = true }
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

// WithConsumerID names this consumer instance in its receives: for
// diagnostics, and for a broadcast consumer (WithBroadcast), which needs
// one, to name the consumer whose position the server keeps.
func WithConsumerID(id string) ConsumerOption {
	return func(o *consumerOptions) { o.consumerID = id }
}

// WithTagFilter has the consumer receive only messages whose tags match:
// any of tags, or all of them when matchAll is set (see TagFilter). The
// group keeps the first filter a receive gives; a consumer with a different
// one stops with ReasonTagFilterConflict.
func WithTagFilter(tags []string, matchAll bool) ConsumerOption {
	return func(o *consumerOptions) { o.tagFilter = &TagFilter{Tags: tags, MatchAll: matchAll} }
}

// WithBroadcast makes the consumer a broadcast consumer: it gets every
// message of the queue by itself instead of sharing them with the group's
// other consumers, each consumer id with its own position kept by the
// server. It needs WithConsumerID (Run fails with ReasonConsumerIDRequired
// without one). start says where a consumer id the server does not know yet
// begins. With autoAck the server acks each message as it delivers it: the
// handler's outcome is then only logged, and a failed message is not
// delivered again. Not with WithStreaming.
func WithBroadcast(start BroadcastStart, autoAck bool) ConsumerOption {
	return func(o *consumerOptions) { o.broadcast = &Broadcast{Start: start, AutoAck: autoAck} }
}

// WithStreaming has the consumer use a Subscription (Project.Subscribe)
// instead of receive calls: the server pushes messages while the consumer
// has credits (WithCredits) and acks go back on the same stream in batches,
// which is faster when there are many messages. When the stream breaks the
// consumer subscribes again, with backoff. Not for broadcast or dead-letter
// consumers.
func WithStreaming() ConsumerOption {
	return func(o *consumerOptions) { o.streaming = true }
}

// WithCredits sets the credits of a streaming consumer's subscription: the
// most messages delivered and not yet acked, those being handled included.
// Default twice WithConcurrency for a Handler, WithConcurrency times
// WithBatchSize for a BatchHandler; at most 10000. Messages beyond the
// running handlers wait in the client while their visibility timeout runs,
// so keep credits low enough that they are handled within it.
func WithCredits(n int) ConsumerOption {
	return func(o *consumerOptions) { o.credits = n }
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

// NewDeadLetterConsumer returns a Consumer that hands each dead letter of a
// consumer group to h (see Project.ReceiveDeadLetters): nil acks the dead
// letter as a success, which removes it for good; an error (Redeliver's
// included) makes it available again at once. The messages carry their
// DeadLetter info. WithTagFilter, WithBroadcast and WithStreaming do not
// apply (Run fails with them), and Run fails with ReasonDeadLettersDisabled
// when the queue keeps no dead letters. Call Run to start.
func NewDeadLetterConsumer(p *Project, queue, group string, h Handler, opts ...ConsumerOption) *Consumer {
	c := newConsumer(p, queue, group, MaxReceiveMessages, opts)
	c.handler = h
	c.deadLetters = true
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
	if err := c.checkOptions(); err != nil {
		return err
	}

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
	var err error
	if c.opts.streaming {
		err = c.streamLoop(loopCtx, handlerBase, slots, &handlers, acks)
	} else {
		err = c.loop(loopCtx, handlerBase, slots, &handlers, acks)
	}
	handlers.Wait()
	acks.close()
	return err
}

// checkOptions refuses combinations of options that cannot work.
func (c *Consumer) checkOptions() error {
	o := c.opts
	switch {
	case c.deadLetters && (o.tagFilter != nil || o.broadcast != nil || o.streaming):
		return errors.New("dms: a dead-letter consumer takes no tag filter, broadcast or streaming")
	case o.streaming && o.broadcast != nil:
		return errors.New("dms: a broadcast consumer cannot stream")
	}
	return nil
}

// credits is the subscription credits of a streaming consumer.
func (c *Consumer) credits() int {
	n := c.opts.credits
	if n <= 0 {
		n = 2 * c.opts.concurrency
		if c.batchHandler != nil {
			n = c.opts.concurrency * c.opts.batchSize
		}
	}
	return min(n, maxCredits)
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
				c.handleBatch(handlerBase, msgs, acks.add)
			}()
			continue
		}
		release(slots, taken-len(msgs))
		for _, m := range msgs {
			handlers.Add(1)
			go func() {
				defer handlers.Done()
				defer release(slots, 1)
				c.handleOne(handlerBase, m, acks.add)
			}()
		}
	}
}

// streamLoop is the loop of a streaming consumer: it hands the messages of a
// subscription to handlers as slots free up, and subscribes again when the
// stream breaks.
func (c *Consumer) streamLoop(ctx, handlerBase context.Context, slots chan struct{}, handlers *sync.WaitGroup, acks *acker) error {
	retry := RetryPolicy{InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second}
	failures := 0
	for {
		// The subscription outlives ctx, so that a stop can ack on it what
		// the running handlers finish; it is closed explicitly.
		sub, err := c.project.Subscribe(handlerBase, c.queue, c.group, SubscribeOptions{
			Credits:           c.credits(),
			VisibilityTimeout: c.opts.visibility,
			TagFilter:         c.opts.tagFilter,
			ConsumerID:        c.opts.consumerID,
		})
		if err == nil {
			var got bool
			got, err = c.handleStream(ctx, handlerBase, sub, slots, handlers, acks)
			if ctx.Err() != nil {
				// Stopping: the handlers ack on the stream while it is
				// open; Close sends their acks and gives back the messages
				// nobody took.
				handlers.Wait()
				sub.Close()
				return nil
			}
			sub.Close()
			if got {
				failures = 0
			}
			if err == nil {
				err = &Error{Code: codes.Unavailable, Message: "the subscription ended"}
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		if !recoverable(err) {
			c.logger.Error("dms: consumer stops: subscription failed", "error", err)
			return err
		}
		failures++
		pause := retry.backoff(failures)
		c.logger.Warn("dms: subscription failed, subscribing again", "backoff", pause, "error", err)
		sleep(ctx, pause)
	}
}

// handleStream runs handlers for the messages of sub until ctx ends (nil) or
// the stream does (its error); got says whether any message came.
func (c *Consumer) handleStream(ctx, handlerBase context.Context, sub *Subscription, slots chan struct{}, handlers *sync.WaitGroup, acks *acker) (got bool, err error) {
	settle := func(m *ReceivedMessage, status AckStatus) {
		if sub.Ack(Ack{ReceiptHandle: m.ReceiptHandle, Status: status}) != nil {
			// The stream is gone; the handle is good on a unary ack.
			acks.add(m, status)
		}
	}
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return got, nil
		}
		var first *ReceivedMessage
		select {
		case m, ok := <-sub.Messages():
			if !ok {
				release(slots, 1)
				return got, sub.Err()
			}
			first = m
		case <-ctx.Done():
			release(slots, 1)
			return got, nil
		}
		got = true
		handlers.Add(1)
		if c.batchHandler == nil {
			go func() {
				defer handlers.Done()
				defer release(slots, 1)
				c.handleOne(handlerBase, first, settle)
			}()
			continue
		}
		batch := []*ReceivedMessage{first}
		for len(batch) < c.opts.batchSize {
			m, ok := tryReceive(sub.msgs)
			if !ok {
				break
			}
			batch = append(batch, m)
		}
		go func() {
			defer handlers.Done()
			defer release(slots, 1)
			c.handleBatch(handlerBase, batch, settle)
		}()
	}
}

func (c *Consumer) receive(ctx context.Context, n int) ([]*ReceivedMessage, error) {
	// A receive that hangs well past its wait time is given up, so that a
	// connection lost without notice does not stall the loop.
	ctx, cancel := context.WithTimeout(ctx, c.opts.waitTime+30*time.Second)
	defer cancel()
	opts := ReceiveOptions{
		MaxMessages:       n,
		WaitTime:          c.opts.waitTime,
		VisibilityTimeout: c.opts.visibility,
		ConsumerID:        c.opts.consumerID,
		TagFilter:         c.opts.tagFilter,
		Broadcast:         c.opts.broadcast,
	}
	if c.deadLetters {
		return c.project.ReceiveDeadLetters(ctx, c.queue, c.group, opts)
	}
	return c.project.Receive(ctx, c.queue, c.group, opts)
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

// settleFunc acks one message with a handler's outcome.
type settleFunc func(m *ReceivedMessage, status AckStatus)

func (c *Consumer) handleOne(base context.Context, m *ReceivedMessage, settle settleFunc) {
	ctx, cancel := c.handlerContext(base, m)
	defer cancel()
	err := c.protect(func() error { return c.handler(ctx, m) })
	c.settle(m, err, settle)
}

func (c *Consumer) handleBatch(base context.Context, msgs []*ReceivedMessage, settle settleFunc) {
	ctx, cancel := c.handlerContext(base, msgs[0], msgs...)
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
		c.settle(m, outcome, settle)
	}
}

// handlerContext is the context of a handler of m (and, for a batch, of the
// messages delivered with it). A message acked on delivery (broadcast with
// auto-ack) has no deadline. Otherwise the consumer extends the visibility
// every two thirds of it until the handler returns, and the context ends
// when an extension fails; without extension it ends at the deadline.
func (c *Consumer) handlerContext(base context.Context, m *ReceivedMessage, batch ...*ReceivedMessage) (context.Context, context.CancelFunc) {
	if m.VisibleAt.IsZero() {
		return context.WithCancel(base)
	}
	visibility := time.Until(m.VisibleAt)
	if c.opts.noExtension || c.deadLetters || visibility <= 0 {
		return context.WithDeadline(base, m.VisibleAt)
	}
	handles := []string{m.ReceiptHandle}
	for _, other := range batch {
		if other != m {
			handles = append(handles, other.ReceiptHandle)
		}
	}
	ctx, cancel := context.WithCancel(base)
	every := visibility * 2 / 3
	timeout := c.opts.visibility
	if timeout == 0 {
		timeout = visibility
	}
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			callCtx, done := context.WithTimeout(context.WithoutCancel(base), every/2)
			results, err := c.project.ChangeVisibility(callCtx, c.queue, c.group, timeout, handles...)
			done()
			if err != nil {
				c.logger.Warn("dms: extending visibility failed; retrying", "message_id", m.ID, "error", err)
				continue
			}
			for _, r := range results {
				if !r.Applied {
					c.logger.Warn("dms: the delivery expired while its handler ran; the group gets it again", "message_id", m.ID, "reason", r.Reason)
					cancel()
					return
				}
			}
		}
	}()
	return ctx, cancel
}

// settle acks a message with a handler's outcome.
func (c *Consumer) settle(m *ReceivedMessage, outcome error, settle settleFunc) {
	if m.ReceiptHandle == "" {
		// Acked on delivery: nothing to settle.
		if outcome != nil {
			c.logger.Warn("dms: handler failed on a message acked on delivery; it is not delivered again", "message_id", m.ID, "error", outcome)
		}
		return
	}
	status := ackStatusFor(outcome)
	if c.deadLetters && status == AckRedeliver {
		status = AckFail
	}
	settle(m, status)
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
		ack := a.c.project.Ack
		if a.c.deadLetters {
			ack = a.c.project.AckDeadLetters
		}
		results, err := ack(ctx, a.c.queue, a.c.group, acks...)
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
