package delivery

import (
	"container/heap"
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/storage/logid"
)

// Limits of a receive.
const (
	MaxReceiveMessages = 1000
	maxReceiveBytes    = 4 << 20
	readBytes          = 256 << 10
)

// Defaults and ranges of receive parameters (the DMS ones: ack_wait 15 to
// 300 s, default 30 s; time_wait up to 60 s).
const (
	DefaultMaxMessages = 10
	DefaultVisibility  = 30 * time.Second
	MinVisibility      = 15 * time.Second
	MaxVisibility      = 300 * time.Second
	MaxWaitTime        = 60 * time.Second
)

// ReceiveOptions are the parameters of one receive.
type ReceiveOptions struct {
	MaxMessages int
	WaitTime    time.Duration
	Visibility  time.Duration
	Filter      *dmsv1.TagFilter
	AutoAck     bool
	// Partitions, when set, are the only partitions received from.
	Partitions map[int32]bool
	// Consumer names who receives, kept in the state record of the
	// deliveries for message traces; empty records nobody.
	Consumer string
}

// Receive delivers messages of a consumer group; with broadcast set, to one
// broadcast consumer that gets every message by itself.
func (e *Engine) Receive(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts ReceiveOptions, consumerID string, broadcast *dmsv1.BroadcastOptions) ([]*dmsv1.ReceivedMessage, error) {
	kind, start := kindMessages, startEarliest
	if broadcast != nil {
		if err := catalog.ValidateConsumerID(consumerID); err != nil {
			return nil, errs.Wrapf(errs.ErrConsumerIDRequired, "broadcast consumption needs a consumer id: %v", err)
		}
		kind, opts.AutoAck = kindBroadcast, broadcast.GetAutoAck()
		if broadcast.GetStart() == dmsv1.BroadcastStart_BROADCAST_START_LATEST {
			start = startLatest
		}
	} else {
		consumerID = ""
	}
	c, err := e.consumption(ctx, kind, q, g, consumerID, start)
	if err != nil {
		return nil, err
	}
	return e.receive(ctx, c, opts)
}

// receive delivers up to opts.MaxMessages messages, waiting up to
// opts.WaitTime for the first.
func (e *Engine) receive(ctx context.Context, c *consumption, opts ReceiveOptions) ([]*dmsv1.ReceivedMessage, error) {
	filter, err := message.NormalizeTagFilter(opts.Filter)
	if err != nil {
		return nil, err
	}
	waitUntil := time.Now().Add(opts.WaitTime)
	for {
		c.mu.Lock()
		msgs, durable, err := e.collect(ctx, c, opts, filter)
		changed := c.changed
		timer, hasTimer := c.earliestTimer()
		readFrom := c.readPositions()
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 && !opts.AutoAck && !c.fifo() {
			// The deliveries are recorded in the state log ahead of any
			// later change to them, so the fsync of that change (an ack, a
			// fail) covers them too, and the answer need not wait for
			// their own. A crash before it returns them to the queue at
			// once, with their delivery count unchanged, instead of at
			// their visibility deadline: at-least-once either way. An
			// auto-ack receive is an ack, and a FIFO group's exclusivity
			// must survive a crash, so those wait. (durable is buffered;
			// the writer logs a failure.)
			return msgs, nil
		}
		if err := <-durable; err != nil {
			return nil, err
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
		wait := time.Until(waitUntil)
		if wait <= 0 {
			return nil, nil
		}
		if hasTimer {
			wait = min(wait, max(timer.Sub(e.now()), time.Millisecond))
		}
		if err := e.waitForMessages(ctx, readFrom, changed, wait); err != nil {
			return nil, err
		}
	}
}

// collect takes what is available now and records it durably.
func (e *Engine) collect(ctx context.Context, c *consumption, opts ReceiveOptions, filter *dmsv1.TagFilter) ([]*dmsv1.ReceivedMessage, <-chan error, error) {
	if c.dropped {
		return nil, nil, errs.Wrapf(errs.ErrUnavailable, "delivery: the state of consumer group %s could not be written; it is being loaded again from its log, retry", c.group.GetDisplayName())
	}
	var batch stateBatch
	switch {
	case filter != nil && c.filter == nil:
		c.filter = filter
		batch.rec(0).TagFilter = filter
	case filter != nil && !sameFilter(filter, c.filter):
		return nil, nil, errs.Wrapf(errs.ErrTagFilterConflict, "the consumer group keeps the tag filter %v; a receive may repeat it or give none, not %v", c.filter, filter)
	}
	now := e.now()
	if err := e.expire(ctx, c, now, &batch); err != nil {
		return nil, nil, err
	}
	deadline := now.Add(opts.Visibility)
	var (
		out   []*dmsv1.ReceivedMessage
		bytes int
	)
	full := func() bool { return len(out) >= opts.MaxMessages || bytes >= maxReceiveBytes }
	n := len(c.parts)
	for i := 0; i < n && !full(); i++ {
		pi := int32((c.rotation + i) % n)
		if opts.Partitions != nil && !opts.Partitions[pi] {
			continue
		}
		p := c.parts[pi]
		// Ordered partitions: a key with a message in flight or waiting for a
		// retry gets nothing more; the others may take consecutive messages.
		var blocked map[string]bool
		if p.ordered {
			blocked = p.blockedKeys()
		}
		// A redelivery deferred behind an earlier message of its key holds
		// back the key's later messages too.
		deferred := map[string]int64{} // key → lowest deferred offset
		keyBlocked := func(r *storagev1.StoredRecord) bool {
			key := r.GetRecord().GetMessage().GetOrderingKey()
			if d, ok := deferred[key]; ok && r.GetOffset() > d {
				return true
			}
			return blocked[key]
		}
		// earliest is, in an ordered partition, the lowest offset of each key
		// among the records read but not delivered (held or buffered): a
		// redelivery of the key must not overtake them.
		var earliest map[string]int64
		if p.ordered && p.ready.Len() > 0 {
			earliest = map[string]int64{}
			for _, list := range [][]*storagev1.StoredRecord{p.held, p.buffered} {
				for _, r := range list {
					key := r.GetRecord().GetMessage().GetOrderingKey()
					if o, ok := earliest[key]; !ok || r.GetOffset() < o {
						earliest[key] = r.GetOffset()
					}
				}
			}
		}
		overtakes := func(r *storagev1.StoredRecord) bool {
			if p.ordered && r.GetOffset() >= p.next {
				// Not reached by the read position (a reload starts it
				// over at the ack floor): what precedes it of its key is
				// unknown until the scan gets there, and takes it then.
				return true
			}
			o, ok := earliest[r.GetRecord().GetMessage().GetOrderingKey()]
			return ok && o < r.GetOffset()
		}
		// take marks the offset in flight at once, so that the scan below
		// skips a message the redelivery heap already handed out.
		take := func(r *storagev1.StoredRecord) {
			rec := batch.rec(pi)
			count := int32(1)
			if opts.AutoAck {
				p.settle(r.GetOffset())
				rec.AckedOffsets = append(rec.AckedOffsets, r.GetOffset())
			} else {
				count = p.deliver(r.GetOffset(), deadline)
				p.track(r.GetOffset(), r.GetRecord().GetMessage().GetOrderingKey())
				rec.DeliveredOffsets = append(rec.DeliveredOffsets, r.GetOffset())
				rec.VisibleAtMs = deadline.UnixMilli()
				rec.Consumer = opts.Consumer
			}
			out = append(out, e.received(c, pi, r, count, opts.AutoAck))
			bytes += len(r.GetRecord().GetMessage().GetBody())
		}
		var later []int64 // failed messages whose key is still blocked
		for p.ready.Len() > 0 && !full() {
			offset := heap.Pop(&p.ready).(int64)
			if p.busy(offset) || p.settled(offset) {
				continue
			}
			r, err := e.readOne(ctx, p.log, offset)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case r == nil:
				p.settle(offset) // deleted by retention meanwhile
			case keyBlocked(r):
				later = append(later, offset)
			case overtakes(r):
				later = append(later, offset)
				key := r.GetRecord().GetMessage().GetOrderingKey()
				if d, ok := deferred[key]; !ok || offset < d {
					deferred[key] = offset
				}
			default:
				take(r)
			}
		}
		for _, o := range later {
			heap.Push(&p.ready, o)
		}
		if p.ordered {
			waiting := p.held[:0]
			for _, r := range p.held {
				if full() || keyBlocked(r) || p.busy(r.GetOffset()) {
					if !p.settled(r.GetOffset()) {
						waiting = append(waiting, r)
					}
					continue
				}
				if !p.settled(r.GetOffset()) {
					take(r)
				}
			}
			p.held = waiting
		}
		for !full() && len(p.held) < maxHeld {
			if len(p.buffered) == 0 {
				resp, err := e.readAhead(ctx, c, p)
				if err != nil {
					return nil, nil, err
				}
				if resp == nil {
					continue // another receive read meanwhile: use what it read
				}
				if resp.GetStartOffset() > p.ackFloor {
					p.skipTo(resp.GetStartOffset())
				}
				if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
					e.skipLost(c, p, pi, lost, &batch)
					continue
				}
				if len(resp.GetRecords()) == 0 {
					break
				}
				p.buffered = resp.GetRecords()
				p.next = p.buffered[len(p.buffered)-1].GetOffset() + 1
			}
			r := p.buffered[0]
			p.buffered = p.buffered[1:]
			if p.busy(r.GetOffset()) || p.settled(r.GetOffset()) {
				continue
			}
			if !message.Matches(c.filter, r.GetRecord().GetMessage().GetTags()) {
				// Not for this group: skipped for good without delivery.
				p.settle(r.GetOffset())
				batch.rec(pi).AckedOffsets = append(batch.rec(pi).AckedOffsets, r.GetOffset())
				continue
			}
			if keyBlocked(r) {
				p.held = append(p.held, r)
				continue
			}
			take(r)
		}
	}
	c.rotation = (c.rotation + 1) % n
	return out, e.submit(c, &batch), nil
}

// skipLost moves a partition past offsets storage reported lost (damaged on
// disk, not repairable): they are settled without delivery and recorded as
// lost in the state log, so that the group never stalls on them and its
// stats say what it skipped.
func (e *Engine) skipLost(c *consumption, p *partitionState, partition int32, lost *storagev1.LostRange, batch *stateBatch) {
	first, last := max(lost.GetFirstOffset(), p.next), lost.GetLastOffset()
	if last < first {
		return
	}
	e.logger.Error("delivery: skipping messages lost to damaged data; they are recorded as lost for the group",
		"consumption", c.key, "partition", partition, "fromOffset", first, "toOffset", last)
	p.skipLost(first, last)
	rec := batch.rec(partition)
	rec.LostOffsets = append(rec.LostOffsets, &deliveryv1.OffsetSpan{First: first, Last: last})
}

// readAhead reads the records after p.next. For unordered partitions it
// releases the consumption's lock while storage reads and the batches are
// decoded, so that the group's consumers overlap their reads; it returns nil
// when another receive moved the position meanwhile. Ordered (FIFO)
// partitions keep the lock: their per-key sequencing was decided under it.
func (e *Engine) readAhead(ctx context.Context, c *consumption, p *partitionState) (*storagev1.ReadResponse, error) {
	from := p.next
	if p.ordered {
		return e.readRecords(ctx, p.log, from, readBytes, 0)
	}
	c.mu.Unlock()
	resp, err := e.readRecords(ctx, p.log, from, readBytes, 0)
	c.mu.Lock()
	if p.next != from || len(p.buffered) > 0 {
		return nil, nil
	}
	return resp, err
}

func (e *Engine) received(c *consumption, partition int32, r *storagev1.StoredRecord, count int32, autoAck bool) *dmsv1.ReceivedMessage {
	m := &dmsv1.ReceivedMessage{
		MessageId:     r.GetRecord().GetMessageId(),
		Message:       r.GetRecord().GetMessage(),
		Partition:     partition,
		Offset:        r.GetOffset(),
		PublishTime:   timestamppb.New(time.UnixMilli(r.GetRecord().GetTimestampMs())),
		DeliveryCount: count,
		DeadLetter:    r.GetRecord().GetDeadLetter(),
	}
	if !autoAck {
		m.ReceiptHandle = e.signer.encode(c.receiptPrefix, partition, r.GetOffset(), count)
	}
	return m
}

func (c *consumption) earliestTimer() (time.Time, bool) {
	var earliest time.Time
	found := false
	for _, p := range c.parts {
		if d, ok := p.earliestTimer(); ok && (!found || d.Before(earliest)) {
			earliest, found = d, true
		}
	}
	return earliest, found
}

// readPosition is where a new message of a log would be read.
type readPosition struct {
	log  logid.ID
	next int64
}

// readPositions returns, per log, the offset a new message would have.
func (c *consumption) readPositions() []readPosition {
	out := make([]readPosition, len(c.parts))
	for i, p := range c.parts {
		out[i] = readPosition{p.log, p.next}
	}
	return out
}

// waitForMessages blocks until a log has a record past its read position,
// something became available early, or wait passes.
func (e *Engine) waitForMessages(ctx context.Context, readFrom []readPosition, changed chan struct{}, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	arrived := make(chan struct{}, len(readFrom))
	for _, pos := range readFrom {
		go func() {
			resp, err := e.storage.Read(wctx, &storagev1.ReadRequest{Log: pos.log, Offset: pos.next, MaxBytes: 1, MaxWait: durationpb.New(wait)})
			if err == nil && len(resp.GetRecords()) > 0 {
				arrived <- struct{}{}
			}
		}()
	}
	select {
	case <-arrived:
	case <-changed:
	case <-wctx.Done():
	}
	return ctx.Err()
}
