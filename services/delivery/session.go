package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// ErrSessionClosed is the error of a Session's Next and Settle once Close
// was called.
var ErrSessionClosed = errors.New("delivery: session closed")

// sessionWait is how long one receive of Next waits for messages before it
// looks at the session's credits again.
const sessionWait = 5 * time.Second

// maxRangeOffsets bounds the offsets one SettleRange may name, so that a
// client cannot make the engine walk an arbitrary span: ten times the most
// messages one receive delivers.
const maxRangeOffsets = MaxReceiveMessages * 10

// CloseAction says what Close does with the deliveries of a session that
// were not settled.
type CloseAction int

const (
	// KeepInFlight leaves them in flight until their visibility timeout,
	// after which the group gets them again, counted as a failed attempt:
	// a consumer that lost its stream may still settle them by handle
	// meanwhile. gRPC Subscribe closes this way.
	KeepInFlight CloseAction = iota
	// ExpireUnsettled ends them at once as if their visibility timeout
	// passed now: available to the group again, the attempt counted, moved
	// to the dead letters at max_consume_count (reason
	// VISIBILITY_TIMEOUT). It is AMQP's rule that a closed channel's unacked
	// messages return at once. (Returning them without counting the attempt
	// would need a state record that takes an attempt back, which the state
	// log does not have.)
	ExpireUnsettled
)

// SessionOptions are the parameters of a push session.
type SessionOptions struct {
	// Visibility of every delivery: MinVisibility to MaxVisibility;
	// DefaultVisibility when zero.
	Visibility time.Duration
	// Filter is the tag filter, with the rule of a receive's: the group
	// keeps the first it is given, and a session may repeat it or give none.
	Filter *dmsv1.TagFilter
	// Credits is how many messages Next may return before Grant gives more;
	// it may be zero (nothing until a Grant) or negative.
	Credits int
	// CreditOnSettle gives a delivery's credit back when the session
	// forgets it: when Settle applied it or found it no longer current. It
	// makes credits a window of unsettled deliveries (AMQP prefetch, Kafka
	// share-group record locks) rather than a count the front end grants
	// explicitly (gRPC Subscribe).
	CreditOnSettle bool
	// Consumer names who receives, for message traces (ReceiveOptions).
	Consumer string
	// MaxBatch is the most messages one Next returns: 1 to
	// MaxReceiveMessages; MaxReceiveMessages when zero.
	MaxBatch int
	// OnClose says what Close does with unsettled deliveries.
	OnClose CloseAction
}

// SettleRange settles, with one status, the deliveries this session made of
// the offsets First to Last (inclusive) of one partition.
type SettleRange struct {
	Partition   int32
	First, Last int64
	Status      dmsv1.AckStatus
}

// position names one message of the group's queue.
type position struct {
	partition int32
	offset    int64
}

// Session pushes a consumer group's messages to one consumer with flow
// control, and settles them by receipt handle or by position. Every push
// front end drives one per consumer: gRPC Subscribe, and the AMQP and Kafka
// adapters.
//
// Credits bound what Next returns: each delivered message consumes one;
// Grant adds more, and with CreditOnSettle settling gives them back.
// Deliveries are the engine's like any other (same visibility deadlines,
// delivery counts, retries and dead letters); the session remembers the
// delivery count of each message it delivered and has not settled, so that
// a SettleRange settles exactly those deliveries and no later one.
//
// Closing the session does not settle anything by default: unsettled
// deliveries stay in flight until their visibility timeout (KeepInFlight),
// as they would for a unary receive whose consumer went away, and their
// handles stay good until then. ExpireUnsettled returns them at once, which
// AMQP needs when a channel closes.
//
// How the front ends map onto it:
//   - gRPC Subscribe: start → OpenSession (KeepInFlight, credits granted
//     explicitly); credits → Grant; acks and ack ranges (SUCCESS) → Settle;
//     a loop of Next → Send.
//   - AMQP 0-9-1: basic.consume → OpenSession with Credits = the basic.qos
//     prefetch, CreditOnSettle and ExpireUnsettled (a later basic.qos →
//     Grant of the difference, possibly negative); basic.deliver ← Next.
//     Delivery tags belong to the channel, which may carry several
//     consumers, so the adapter numbers deliveries and keeps tag → handle;
//     basic.ack, with multiple=true every unsettled tag up to the given one
//     → Settle(handles, SUCCESS); basic.nack and basic.reject → FAIL
//     (requeue=true: available again at once; requeue=false: a failure,
//     dead-lettered at max_consume_count); channel close or basic.cancel →
//     Close.
//   - Kafka share groups: a member's share session → OpenSession with
//     Credits = the records it may hold acquired, CreditOnSettle,
//     Visibility = the acquisition lock duration; ShareFetch → Settle of
//     its acknowledgement batches as ranges per partition (ACCEPT →
//     SUCCESS, RELEASE → FAIL, REJECT → FAIL: the engine has no status that
//     archives at once), then Next bounded by MaxWaitMs; DeliveryCount is
//     Kafka's delivery count.
//
// Grant, Settle and Close may be called concurrently with each other and
// with Next; Next is called by one goroutine at a time.
type Session struct {
	engine *Engine
	queue  *metadatav1.QueueRecord
	group  *metadatav1.GroupRecord
	c      *consumption
	owner  receipt // the queue and group of every receipt this session settles
	opts   SessionOptions
	recv   ReceiveOptions

	// closing is canceled by Close; it ends a Next in progress.
	closing   context.Context
	stop      context.CancelFunc
	closeOnce sync.Once
	closeErr  error
	// nextMu is held by Next, so that Close sees everything Next delivered.
	nextMu sync.Mutex
	// granted wakes a Next waiting for credit.
	granted chan struct{}

	mu        sync.Mutex
	credits   int
	delivered map[position]int32 // delivery counts of what Next returned and was not settled

	// afterApply, when set (by tests), runs in Settle after the acks were
	// applied and before the session forgets the settled deliveries.
	afterApply func()
}

// OpenSession starts a push session of consumer group g of queue q.
func (e *Engine) OpenSession(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts SessionOptions) (*Session, error) {
	opts.Visibility = cmp.Or(opts.Visibility, DefaultVisibility)
	if opts.Visibility < MinVisibility || opts.Visibility > MaxVisibility {
		return nil, errs.Wrapf(errs.ErrVisibilityTimeoutInvalid, "visibility_timeout must be %s to %s, got %s", MinVisibility, MaxVisibility, opts.Visibility)
	}
	if opts.MaxBatch <= 0 || opts.MaxBatch > MaxReceiveMessages {
		opts.MaxBatch = MaxReceiveMessages
	}
	s := &Session{engine: e, queue: q, group: g, opts: opts, credits: opts.Credits,
		recv:    ReceiveOptions{Visibility: opts.Visibility, Filter: opts.Filter, WaitTime: sessionWait, Consumer: opts.Consumer},
		granted: make(chan struct{}, 1), delivered: map[position]int32{}}
	if !s.owner.setOwner(q.GetId(), g.GetId()) {
		return nil, fmt.Errorf("delivery: queue %q or group %q has an id that is not a UUID", q.GetId(), g.GetId())
	}
	c, err := e.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return nil, err
	}
	s.c = c
	s.closing, s.stop = context.WithCancel(context.Background())
	return s, nil
}

// Grant adds n credits; a negative n takes credits back (a lower prefetch),
// which holds Next until settles or grants make the balance positive again.
func (s *Session) Grant(n int) {
	s.mu.Lock()
	s.credits += n
	s.mu.Unlock()
	s.wake()
}

func (s *Session) wake() {
	select {
	case s.granted <- struct{}{}:
	default:
	}
}

func (s *Session) available() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credits
}

// Next blocks until the session has credit and messages are available, and
// returns them: at most the credits left and MaxBatch, each consuming a
// credit. Deliveries are recorded in the state log ahead of any later change
// to them but, like a unary receive's, not waited for (FIFO queues excepted:
// see receive). Next returns ctx's error when ctx ends, and ErrSessionClosed
// once Close was called.
func (s *Session) Next(ctx context.Context) ([]*dmsv1.ReceivedMessage, error) {
	s.nextMu.Lock()
	defer s.nextMu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.closing, cancel)()
	for {
		if err := s.stopped(ctx); err != nil {
			return nil, err
		}
		n := s.available()
		if n <= 0 {
			select {
			case <-s.granted:
			case <-ctx.Done():
			}
			continue
		}
		opts := s.recv
		opts.MaxMessages = min(n, s.opts.MaxBatch)
		msgs, err := s.engine.receive(ctx, s.c, opts)
		if err != nil {
			if stopped := s.stopped(ctx); stopped != nil {
				return nil, stopped
			}
			return nil, err
		}
		if len(msgs) == 0 {
			continue
		}
		s.record(msgs)
		// Delivered while Close ran: they are the session's, so Close
		// (which waits for Next) deals with them as with the others.
		if s.closing.Err() != nil {
			return nil, ErrSessionClosed
		}
		return msgs, nil
	}
}

// stopped returns why Next must stop, if it must.
func (s *Session) stopped(ctx context.Context) error {
	if s.closing.Err() != nil {
		return ErrSessionClosed
	}
	return ctx.Err()
}

// record notes what Next delivered and consumes its credits.
func (s *Session) record(msgs []*dmsv1.ReceivedMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.credits -= len(msgs)
	for _, m := range msgs {
		s.delivered[position{m.GetPartition(), m.GetOffset()}] = m.GetDeliveryCount()
	}
}

// Settle applies acks by receipt handle (of any delivery of the group's
// messages, this session's or not) and by range (of this session's
// deliveries only, each with the delivery count it was sent with), in that
// order, and makes them durable before returning. It returns one result per
// handle and one per range; a range is applied only if every offset in it
// was, and the offsets of a range that fails are applied where they could
// be. A range of more than 10000 offsets is refused whole. An
// error means nothing was answered: storage failed.
func (s *Session) Settle(ctx context.Context, handles []AckRequest, ranges []SettleRange) (handleResults, rangeResults []*dmsv1.AckResult, err error) {
	if s.closing.Err() != nil {
		return nil, nil, ErrSessionClosed
	}
	items := s.engine.decode(handles)
	rangeResults = make([]*dmsv1.AckResult, len(ranges))
	rangeEnds := make([]int, len(ranges))
	s.mu.Lock()
	for i, r := range ranges {
		if r.Last >= r.First && uint64(r.Last-r.First) >= maxRangeOffsets {
			rangeResults[i] = notApplied(errs.Wrapf(errs.ErrBatchTooLarge, "an offset range settles at most %d offsets, got %d to %d", maxRangeOffsets, r.First, r.Last))
			rangeEnds[i] = len(items)
			continue
		}
		for o := r.First; o <= r.Last; o++ {
			it := ackItem{receipt: s.receiptOf(position{r.Partition, o}, 0), status: r.Status}
			if count, ok := s.delivered[position{r.Partition, o}]; ok {
				it.receipt.count = count
			} else {
				it.err = errs.Wrapf(errs.ErrReceiptHandleExpired, "offset %d of partition %d was not sent on this subscription or is settled", o, r.Partition)
			}
			items = append(items, it)
			if o == r.Last {
				break // o++ would overflow at the largest offset
			}
		}
		rangeEnds[i] = len(items)
	}
	s.mu.Unlock()
	results, err := s.engine.ack(ctx, s.queue, s.group, kindMessages, items, false)
	if err != nil {
		return nil, nil, err
	}
	if s.afterApply != nil {
		s.afterApply()
	}
	s.forget(items, results)
	from := len(handles)
	for i, end := range rangeEnds {
		if rangeResults[i] != nil {
			continue
		}
		rangeResults[i] = &dmsv1.AckResult{Applied: true}
		for _, r := range results[from:end] {
			if !r.GetApplied() {
				rangeResults[i] = r
				break
			}
		}
		from = end
	}
	return slices.Clip(results[:len(handles)]), rangeResults, nil
}

// forget drops the settled deliveries from the session, but only those very
// deliveries: a failed message may already have been delivered again, with
// a higher count, while its fail was applied, and that delivery is still
// the session's to settle. A delivery whose settle found it no longer
// current (its visibility passed) is forgotten too: it can never be settled.
func (s *Session) forget(items []ackItem, results []*dmsv1.AckResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	freed := 0
	for i, it := range items {
		if it.err != nil {
			continue
		}
		pos := position{it.receipt.partition, it.receipt.offset}
		count, ok := s.delivered[pos]
		if !ok || count != it.receipt.count {
			continue
		}
		if results[i].GetApplied() || results[i].GetErrorReason() == errs.ErrReceiptHandleExpired.Reason {
			delete(s.delivered, pos)
			freed++
		}
	}
	if s.opts.CreditOnSettle && freed > 0 {
		s.credits += freed
		s.wake()
	}
}

// receiptOf is the receipt of this session's delivery count of pos.
func (s *Session) receiptOf(pos position, count int32) receipt {
	return receipt{kind: kindMessages, queue: s.owner.queue, group: s.owner.group, partition: pos.partition, offset: pos.offset, count: count}
}

// Close ends the session: a Next in progress returns ErrSessionClosed, and
// so do later calls of Next and Settle. With ExpireUnsettled it returns the
// unsettled deliveries to the group, durably before it returns (ctx bounds
// that write); with KeepInFlight it writes nothing. Close may be called more
// than once; it returns the first call's error.
func (s *Session) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		s.stop()
		s.nextMu.Lock() // Next returns at once: wait for what it delivered
		defer s.nextMu.Unlock()
		if s.opts.OnClose != ExpireUnsettled {
			return
		}
		s.mu.Lock()
		items := make([]ackItem, 0, len(s.delivered))
		for pos, count := range s.delivered {
			items = append(items, ackItem{receipt: s.receiptOf(pos, count), status: dmsv1.AckStatus_ACK_STATUS_FAIL, failure: failureTimeout})
		}
		s.delivered = map[position]int32{}
		s.mu.Unlock()
		// In offset order, so that a FIFO queue's dead letters keep it.
		slices.SortFunc(items, func(a, b ackItem) int {
			return cmp.Or(cmp.Compare(a.receipt.partition, b.receipt.partition), cmp.Compare(a.receipt.offset, b.receipt.offset))
		})
		_, s.closeErr = s.engine.ack(ctx, s.queue, s.group, kindMessages, items, false)
	})
	return s.closeErr
}
