package dms

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// ErrSubscriptionClosed is the error of an ack given to a Subscription that
// was closed or whose stream ended. The receipt handle is still good until
// the message's visibility timeout: settle it with Project.Ack instead.
var ErrSubscriptionClosed = errors.New("dms: subscription closed")

// DefaultCredits is the number of credits of a subscription when
// SubscribeOptions.Credits is zero.
const DefaultCredits = 100

// maxCredits bounds SubscribeOptions.Credits, and so the messages a
// subscription holds in memory.
const maxCredits = 10000

// SubscribeOptions are the parameters of a subscription.
type SubscribeOptions struct {
	// Credits is the most messages the subscription holds at once:
	// delivered by the server and not yet acked. The server sends while
	// the subscription has credits left, and every ack gives one back.
	// More credits mean more throughput but more messages waiting in the
	// client, where their visibility timeout runs. 1 to 10000;
	// DefaultCredits when zero.
	Credits int
	// VisibilityTimeout is how long a delivered message stays invisible
	// to the group's other consumers unless acked: 15 s to 300 s; the
	// server's default (30 s) when zero.
	VisibilityTimeout time.Duration
	// TagFilter receives only matching messages, with the rule of
	// ReceiveOptions.TagFilter.
	TagFilter *TagFilter
	// ConsumerID names the consumer instance, for diagnostics; optional.
	ConsumerID string
	// OnAckFailure, when set, is called for every ack the server did not
	// apply (and for acks that could not be sent when the stream ended).
	// It runs on the subscription's own goroutine and must not block; it
	// must not call the subscription's methods.
	OnAckFailure func(AckFailure)
}

// AckFailure is an ack of a subscription that the server did not apply.
type AckFailure struct {
	// MessageID is the id of the message acked; empty when the handle was
	// not of a message delivered on this subscription.
	MessageID string
	// Ack is the ack as given to Subscription.Ack.
	Ack Ack
	// Result says why it was not applied, typically
	// ReasonReceiptHandleExpired when the visibility timeout had passed.
	// An ack that was sent as part of an offset range shares the range's
	// result: the server applied the acks of the range that it could, and
	// this one may be among them.
	Result AckResult
}

// Subscription is a stream of the messages of a consumer group to one
// consumer, with flow control: the server sends at most Credits messages
// that are not yet acked, and each ack grants one more. Ack settles the
// messages; acks are sent on the same stream in batches, consecutive
// successes of one partition as an offset range, all that piled up while the
// previous batch was applied. It is the high-throughput alternative to
// Receive and Ack, with the same at-least-once delivery. Make one with
// Project.Subscribe and Close it when done.
//
// The methods of a Subscription are safe for concurrent use.
type Subscription struct {
	project      *Project
	queue, group string
	opts         SubscribeOptions
	visibility   time.Duration

	ctx    context.Context // the stream's
	cancel context.CancelFunc
	stream dmsv1.ConsumerService_SubscribeClient
	msgs   chan *ReceivedMessage

	mu          sync.Mutex
	outstanding map[string]delivered // by receipt handle: delivered, not yet acked
	pending     []subAck             // acked, not yet sent
	grant       int                  // credits to grant
	sent        []sentAcks           // sent, waiting for their results
	closing     bool
	ended       bool  // the stream ended
	err         error // why, unless closed
	wake        chan struct{}

	recvDone  chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	rangesSent atomic.Int64 // offset ranges acked, for tests
}

type delivered struct {
	id        string
	partition int32
	offset    int64
	visibleAt time.Time
}

type subAck struct {
	ack   Ack
	known bool // of a message delivered on this subscription: pos is set
	pos   delivered
}

// sentAcks is one request's acks: the results come in this order.
type sentAcks struct {
	handles []subAck
	ranges  [][]subAck
}

// Subscribe opens a subscription to a consumer group. It returns once the
// stream is open; the server checks the group and the options afterwards,
// so a missing group or a conflicting tag filter shows as Messages being
// closed and Err saying why. Canceling ctx ends the subscription at once,
// without sending acks still pending: prefer Close.
func (p *Project) Subscribe(ctx context.Context, queue, group string, opts SubscribeOptions) (*Subscription, error) {
	if opts.Credits == 0 {
		opts.Credits = DefaultCredits
	}
	if opts.Credits < 0 || opts.Credits > maxCredits {
		return nil, errors.New("dms: SubscribeOptions.Credits must be 1 to 10000")
	}
	sctx, cancel := context.WithCancel(ctx)
	stream, err := p.client.cons.Subscribe(sctx)
	if err != nil {
		cancel()
		return nil, fromRPC(ctx, err)
	}
	start := &dmsv1.SubscribeStart{
		Group:      p.groupResource(queue, group),
		Credits:    int32(opts.Credits),
		TagFilter:  opts.TagFilter.toProto(),
		ConsumerId: opts.ConsumerID,
	}
	if opts.VisibilityTimeout != 0 {
		start.VisibilityTimeout = durationpb.New(opts.VisibilityTimeout)
	}
	if err := stream.Send(&dmsv1.SubscribeRequest{Start: start}); err != nil {
		// The real error comes from Recv.
		_, err = stream.Recv()
		cancel()
		return nil, fromRPC(ctx, err)
	}
	s := &Subscription{
		project:     p,
		queue:       queue,
		group:       group,
		opts:        opts,
		visibility:  visibilityOf(opts.VisibilityTimeout),
		ctx:         sctx,
		cancel:      cancel,
		stream:      stream,
		msgs:        make(chan *ReceivedMessage, opts.Credits),
		outstanding: make(map[string]delivered, opts.Credits),
		wake:        make(chan struct{}, 1),
		recvDone:    make(chan struct{}),
		done:        make(chan struct{}),
	}
	go s.receive()
	go s.send()
	return s, nil
}

// Messages returns the channel of delivered messages. It is closed when the
// subscription ends: by Close, by its context, or by a failure that Err
// returns. Each message must be acked (Ack) before its visibility timeout
// passes, or the group gets it again.
func (s *Subscription) Messages() <-chan *ReceivedMessage { return s.msgs }

// Ack settles deliveries, as Project.Ack does, without waiting: the acks are
// sent in the next batch, and each ack of a message of this subscription
// gives its credit back. Acks the server does not apply are reported to
// SubscribeOptions.OnAckFailure. Once the subscription is closed or ended,
// Ack returns ErrSubscriptionClosed and sends nothing.
func (s *Subscription) Ack(acks ...Ack) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.closing {
		return ErrSubscriptionClosed
	}
	s.addAcksLocked(acks)
	s.wakeSender()
	return nil
}

func (s *Subscription) addAcksLocked(acks []Ack) {
	for _, a := range acks {
		sa := subAck{ack: a}
		if d, ok := s.outstanding[a.ReceiptHandle]; ok {
			delete(s.outstanding, a.ReceiptHandle)
			sa.known, sa.pos = true, d
			s.grant++
		}
		s.pending = append(s.pending, sa)
	}
}

func (s *Subscription) wakeSender() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Err returns why the subscription ended: nil while it runs and after Close
// ended it; otherwise the failure of the stream (the group does not exist,
// the server went away, ...) or of its context.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// closeTimeout bounds how long Close waits for the results of the last acks.
const closeTimeout = 10 * time.Second

// Close ends the subscription: it sends the acks given so far and waits
// (up to 10 s) for their results, fails the messages still waiting in
// Messages so that the group gets them again at once (as their visibility
// timeout would, with the delivery counted), and closes the stream. Ack the
// messages the application took before calling Close. Messages the server
// sent while Close ran come back after their visibility timeout. Close
// returns Err; it may be called more than once.
func (s *Subscription) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		ended := s.ended
		s.closing = !ended
		s.mu.Unlock()
		if !ended {
			s.failWaiting()
			s.wakeSender()
		}
	})
	<-s.done
	return s.Err()
}

// failWaiting acks as failed the messages in the channel that nobody took
// and reports whether there were any.
func (s *Subscription) failWaiting() bool {
	var fails []Ack
	for len(fails) < cap(s.msgs) {
		m, ok := tryReceive(s.msgs)
		if !ok {
			break
		}
		fails = append(fails, m.Fail())
	}
	if len(fails) == 0 {
		return false
	}
	s.mu.Lock()
	s.addAcksLocked(fails)
	s.mu.Unlock()
	return true
}

func tryReceive(ch chan *ReceivedMessage) (*ReceivedMessage, bool) {
	select {
	case m, ok := <-ch:
		return m, ok
	default:
		return nil, false
	}
}

// receive reads the stream: messages go to the channel (which has room for
// every credit, so this never waits for the application), ack results to
// whoever waits for them.
func (s *Subscription) receive() {
	defer close(s.recvDone)
	defer close(s.msgs)
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.end(err)
			return
		}
		if len(resp.GetMessages()) > 0 {
			visibleAt := time.Now().Add(s.visibility)
			out := receivedList(resp.GetMessages(), visibleAt)
			s.mu.Lock()
			closing := s.closing
			for _, m := range out {
				s.outstanding[m.ReceiptHandle] = delivered{id: m.ID, partition: int32(m.Partition), offset: m.Offset, visibleAt: visibleAt}
			}
			if closing {
				// Arrived while closing: give them back at once.
				for _, m := range out {
					s.addAcksLocked([]Ack{m.Fail()})
				}
			}
			s.mu.Unlock()
			if closing {
				s.wakeSender()
			} else {
				for _, m := range out {
					select {
					case s.msgs <- m:
					case <-s.ctx.Done():
					}
				}
			}
		}
		if len(resp.GetAckResults()) > 0 {
			s.results(resp.GetAckResults())
		}
	}
}

// results matches the results of one ack request with its acks.
func (s *Subscription) results(results []*dmsv1.AckResult) {
	s.mu.Lock()
	if len(s.sent) == 0 {
		s.mu.Unlock()
		s.project.client.logger.Warn("dms: subscription got ack results it did not ask for", "queue", s.queue, "group", s.group)
		return
	}
	batch := s.sent[0]
	s.sent = s.sent[1:]
	s.mu.Unlock()
	s.wakeSender()
	if len(results) != len(batch.handles)+len(batch.ranges) {
		s.project.client.logger.Warn("dms: subscription got a wrong number of ack results", "queue", s.queue, "group", s.group, "results", len(results), "acks", len(batch.handles)+len(batch.ranges))
	}
	for i, r := range results {
		if r.GetApplied() {
			continue
		}
		res := ackResultFromProto(r)
		switch {
		case i < len(batch.handles):
			s.failed(batch.handles[i], res)
		case i-len(batch.handles) < len(batch.ranges):
			for _, a := range batch.ranges[i-len(batch.handles)] {
				s.failed(a, res)
			}
		}
	}
}

func (s *Subscription) failed(a subAck, r AckResult) {
	s.project.client.logger.Warn("dms: ack not applied", "queue", s.queue, "group", s.group, "message_id", a.pos.id, "status", a.ack.Status, "reason", r.Reason, "error", r.Message)
	if s.opts.OnAckFailure != nil {
		s.opts.OnAckFailure(AckFailure{MessageID: a.pos.id, Ack: a.ack, Result: r})
	}
}

// end records that the stream ended.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	if !s.ended {
		s.ended = true
		if !s.closing {
			s.err = fromRPC(s.ctx, err)
		}
	}
	s.mu.Unlock()
	s.wakeSender()
}

// The sizes of one ack request of a subscription.
const (
	maxRangeLen            = 1000 // offsets per range
	maxAcksPerRequest      = 5000 // acks, in handles and ranges
	sweepInterval          = time.Second
	maxAckRequestsInFlight = 1
)

// send writes the stream: acks (all that piled up while the previous batch
// was applied) and credits. When the subscription closes it sends the last
// acks, waits for their results and ends the stream; when the stream
// ended, it settles what was left with unary acks.
func (s *Subscription) send() {
	defer close(s.done)
	defer s.cancel()
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	var closeDeadline <-chan time.Time
	for {
		select {
		case <-s.wake:
		case <-sweep.C:
			s.reclaimExpired()
		case <-s.recvDone:
		case <-closeDeadline:
			s.mu.Lock()
			left := len(s.pending) + len(s.sent)
			s.mu.Unlock()
			s.project.client.logger.Warn("dms: subscription closed before all acks were confirmed", "queue", s.queue, "group", s.group, "acks", left)
			s.cancel()
			<-s.recvDone
			s.settleLeft()
			return
		}
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			s.settleLeft()
			return
		}
		if s.closing && closeDeadline == nil {
			closeDeadline = time.After(closeTimeout)
		}
		if s.closing && len(s.pending) == 0 && len(s.sent) == 0 {
			s.mu.Unlock()
			if s.failWaiting() {
				// The stream delivered more while Close began.
				s.wakeSender()
				continue
			}
			_ = s.stream.CloseSend()
			s.cancel()
			<-s.recvDone
			return
		}
		req := &dmsv1.SubscribeRequest{}
		if len(s.pending) > 0 && len(s.sent) < maxAckRequestsInFlight {
			n := min(len(s.pending), maxAcksPerRequest)
			batch := buildAcks(s.pending[:n])
			s.pending = slices.Delete(s.pending, 0, n)
			s.sent = append(s.sent, batch)
			req.Acks = acksToProto(ackList(batch.handles))
			s.rangesSent.Add(int64(len(batch.ranges)))
			for _, r := range batch.ranges {
				req.AckRanges = append(req.AckRanges, &dmsv1.OffsetRange{Partition: r[0].pos.partition, First: r[0].pos.offset, Last: r[len(r)-1].pos.offset})
			}
		}
		// Credits go with acks, or alone once a quarter of them is due;
		// none while closing.
		if !s.closing && s.grant > 0 && (len(req.Acks)+len(req.AckRanges) > 0 || s.grant >= max(1, s.opts.Credits/4)) {
			req.Credits = int32(s.grant)
			s.grant = 0
		}
		more := len(s.pending) > 0 && len(s.sent) < maxAckRequestsInFlight
		s.mu.Unlock()
		if req.Credits == 0 && len(req.Acks) == 0 && len(req.AckRanges) == 0 {
			continue
		}
		if err := s.stream.Send(req); err != nil {
			// Recv reports the stream's error; the acks of req are
			// settled by settleLeft.
			continue
		}
		if more {
			s.wakeSender()
		}
	}
}

// reclaimExpired gives back the credits of messages whose visibility timeout
// passed without an ack: the group gets them again anyway, and a
// subscription whose application lost some messages must not stall.
func (s *Subscription) reclaimExpired() {
	now := time.Now()
	s.mu.Lock()
	for h, d := range s.outstanding {
		if now.After(d.visibleAt) {
			delete(s.outstanding, h)
			s.grant++
		}
	}
	s.mu.Unlock()
	s.wakeSender()
}

// settleLeft sends the acks the stream could not carry, or whose results it
// did not bring, as unary acks: receipt handles are good on any call.
func (s *Subscription) settleLeft() {
	s.mu.Lock()
	var left []subAck
	for _, b := range s.sent {
		left = append(left, b.handles...)
		for _, r := range b.ranges {
			left = append(left, r...)
		}
	}
	left = append(left, s.pending...)
	s.sent, s.pending = nil, nil
	s.mu.Unlock()
	if len(left) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), ackTimeout)
	defer cancel()
	results, err := s.project.Ack(ctx, s.queue, s.group, ackList(left)...)
	for i, a := range left {
		switch {
		case i < len(results):
			if !results[i].Applied {
				s.failed(a, results[i])
			}
		default:
			s.failed(a, AckResult{Reason: ReasonOf(err), Message: "the subscription ended and the ack could not be sent: " + errString(err)})
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "no result"
	}
	return err.Error()
}

func ackList(as []subAck) []Ack {
	out := make([]Ack, len(as))
	for i, a := range as {
		out[i] = a.ack
	}
	return out
}

// buildAcks turns acks into a request's handles and ranges: runs of at least
// two successes of consecutive offsets of one partition, all delivered on
// this subscription, become ranges; everything else goes by handle.
func buildAcks(acks []subAck) sentAcks {
	var out sentAcks
	var succ []subAck
	for _, a := range acks {
		if a.known && (a.ack.Status == AckSuccess || a.ack.Status == 0) {
			succ = append(succ, a)
		} else {
			out.handles = append(out.handles, a)
		}
	}
	slices.SortFunc(succ, func(a, b subAck) int {
		if a.pos.partition != b.pos.partition {
			return int(a.pos.partition - b.pos.partition)
		}
		switch {
		case a.pos.offset < b.pos.offset:
			return -1
		case a.pos.offset > b.pos.offset:
			return 1
		}
		return 0
	})
	for i := 0; i < len(succ); {
		j := i + 1
		for j < len(succ) && j-i < maxRangeLen && succ[j].pos.partition == succ[i].pos.partition && succ[j].pos.offset == succ[j-1].pos.offset+1 {
			j++
		}
		if j-i >= 2 {
			out.ranges = append(out.ranges, succ[i:j:j])
		} else {
			out.handles = append(out.handles, succ[i])
		}
		i = j
	}
	return out
}
