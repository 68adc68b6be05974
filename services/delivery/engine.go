// Package delivery is the delivery role, the consumers' front door: per
// consumer group and partition it keeps the position, the acked set, the
// in-flight deliveries with their visibility deadlines and delivery counts,
// retries and dead letters, and it makes every change durable in a state log
// in storage before answering (a receive of a NORMAL queue excepted: see
// receive).
package delivery

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
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
	// RetryDelay is the shortest time a REDELIVER ack hides a message (the
	// DMS rule: redelivered messages come back after at least 30 s).
	RetryDelay = 30 * time.Second
)

// Engine keeps the delivery state of the consumptions it serves.
type Engine struct {
	cfg     Config
	storage storagev1.StorageServiceClient
	cache   *catalog.Cache
	signer  signer
	now     func() time.Time
	logger  *slog.Logger

	mu           sync.Mutex
	consumptions map[string]*consumption // by state log key

	// background counts the state writers and trims running, which Stop
	// waits for: what they write was already applied in memory and
	// answered, so they finish rather than being cancelled.
	background sync.WaitGroup
}

// Stop waits for the state writes in flight, until ctx ends. The listeners
// must have stopped first, so that no new request makes more.
func (e *Engine) Stop(ctx context.Context) error {
	done := make(chan struct{})
	go func() { e.background.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("delivery: state writes still in flight at stop: %w", ctx.Err())
	}
}

// NewEngine returns a delivery engine. receiptKey signs receipt handles and
// must be the same in every delivery process of the cluster.
func NewEngine(cfg Config, storage storagev1.StorageServiceClient, cache *catalog.Cache, receiptKey []byte, now func() time.Time, logger *slog.Logger) *Engine {
	e := &Engine{cfg: cfg, storage: storage, cache: cache, signer: newSigner(receiptKey), now: now, logger: logger, consumptions: map[string]*consumption{}}
	cache.Subscribe(e.onCatalogEvent)
	return e
}

func (e *Engine) onCatalogEvent(ev catalog.Event) {
	if ev.Kind != catalog.QueueDeleted && ev.Kind != catalog.GroupDeleted {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, c := range e.consumptions {
		if c.queue.GetId() == ev.QueueID && (ev.Kind == catalog.QueueDeleted || c.group.GetId() == ev.GroupID) {
			delete(e.consumptions, key)
		}
	}
}

// startPosition says where a consumption without state begins.
type startPosition int

const (
	startEarliest startPosition = iota
	startLatest
)

// consumption returns the loaded consumption, replaying its state log on
// first use.
func (e *Engine) consumption(ctx context.Context, kind consumptionKind, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, consumerID string, start startPosition) (*consumption, error) {
	name := logid.Key(stateLogID(kind, q.GetId(), g.GetId(), consumerID))
	e.mu.Lock()
	c := e.consumptions[name]
	if c == nil {
		c = newConsumption(kind, q, g, consumerID)
		e.consumptions[name] = c
	}
	e.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		if err := e.load(ctx, c, start); err != nil {
			return nil, err
		}
		c.loaded = true
	}
	return c, nil
}

// load replays the consumption's state log; one without state starts at the
// earliest retained message, or after the latest when asked to.
func (e *Engine) load(ctx context.Context, c *consumption, start startPosition) error {
	c.parts = make([]*partitionState, len(c.logs))
	for i, log := range c.logs {
		c.parts[i] = newPartitionState(log, c.fifo())
	}
	replayed := 0
	for offset := int64(0); ; {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: c.stateLog, Offset: offset, MaxBytes: 4 << 20})
		if err != nil {
			return err
		}
		for _, r := range resp.GetRecords() {
			rec := &deliveryv1.StateRecord{}
			if err := proto.Unmarshal(r.GetRecord().GetPayload(), rec); err != nil {
				return fmt.Errorf("delivery: %s offset %d: %w", logid.Describe(c.stateLog), r.GetOffset(), err)
			}
			if rec.GetTagFilter() != nil {
				c.filter = rec.GetTagFilter()
			}
			if p := int(rec.GetPartition()); p >= 0 && p < len(c.parts) {
				c.parts[p].replay(rec)
			}
			offset = r.GetOffset() + 1
			replayed++
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			break
		}
	}
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: c.logs})
	if err != nil {
		return err
	}
	for i, p := range c.parts {
		p.finishReplay()
		p.skipTo(info.GetLogs()[i].GetStartOffset())
		if p.ordered {
			// The keys of busy messages are not in the state log.
			for _, o := range p.busyOffsets() {
				r, err := e.readOne(ctx, p.log, o)
				if err != nil {
					return err
				}
				p.track(o, r.GetRecord().GetMessage().GetOrderingKey())
			}
		}
	}
	if replayed == 0 && start == startLatest {
		var batch stateBatch
		for i, p := range c.parts {
			next := info.GetLogs()[i].GetNextOffset()
			p.reset(next)
			batch.rec(int32(i)).SeekOffset = proto.Int64(next)
		}
		return e.flush(ctx, c, &batch)
	}
	if replayed > 0 {
		e.logger.Info("delivery state loaded", "log", c.key, "records", replayed)
	}
	return nil
}

// ReceiveOptions are the parameters of one receive.
type ReceiveOptions struct {
	MaxMessages int
	WaitTime    time.Duration
	Visibility  time.Duration
	Filter      *dmsv1.TagFilter
	AutoAck     bool
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
		p := c.parts[pi]
		// Ordered partitions: a key with a message in flight or waiting for a
		// retry gets nothing more; the others may take consecutive messages.
		var blocked map[string]bool
		if p.ordered {
			blocked = p.blockedKeys()
		}
		keyBlocked := func(r *storagev1.StoredRecord) bool {
			return blocked[r.GetRecord().GetMessage().GetOrderingKey()]
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

// readAhead reads the records after p.next. For unordered partitions it
// releases the consumption's lock while storage reads and decodes, so that
// the group's consumers overlap their reads; it returns nil when another
// receive moved the position meanwhile. Ordered (FIFO) partitions keep the
// lock: their per-key sequencing was decided under it.
func (e *Engine) readAhead(ctx context.Context, c *consumption, p *partitionState) (*storagev1.ReadResponse, error) {
	req := &storagev1.ReadRequest{Log: p.log, Offset: p.next, MaxBytes: readBytes}
	if p.ordered {
		return e.storage.Read(ctx, req)
	}
	c.mu.Unlock()
	resp, err := e.storage.Read(ctx, req)
	c.mu.Lock()
	if p.next != req.GetOffset() || len(p.buffered) > 0 {
		return nil, nil
	}
	return resp, err
}

// expire turns in-flight deliveries whose visibility passed into failed
// attempts, and releases retries that are due.
func (e *Engine) expire(ctx context.Context, c *consumption, now time.Time, batch *stateBatch) error {
	for pi, p := range c.parts {
		for _, offset := range p.due(now) {
			if err := e.fail(ctx, c, int32(pi), offset, failureTimeout, now, batch); err != nil {
				return err
			}
		}
	}
	return nil
}

// fail handles one failed attempt: the message moves to the dead-letter
// queue when it failed max_consume_count times, otherwise it is available
// again at once (fail, timeout) or after the retry delay (redeliver).
func (e *Engine) fail(ctx context.Context, c *consumption, pi int32, offset int64, reason string, now time.Time, batch *stateBatch) error {
	p := c.parts[pi]
	rec := batch.rec(pi)
	if c.deadLettersEnabled() && p.attempts[offset] >= c.queue.GetMaxConsumeCount() {
		r, err := e.readOne(ctx, p.log, offset)
		if err != nil {
			return err
		}
		if r != nil {
			batch.deadLetters = append(batch.deadLetters, &storagev1.Record{
				TimestampMs: now.UnixMilli(),
				MessageId:   r.GetRecord().GetMessageId(),
				Message:     r.GetRecord().GetMessage(),
				DeadLetter: &dmsv1.DeadLetterInfo{
					FailureCount:      p.attempts[offset],
					LastFailureReason: reason,
					DeadLetterTime:    timestamppb.New(now),
					SourcePartition:   pi,
					SourceOffset:      offset,
				},
			})
		}
		p.settle(offset)
		rec.DeadLetteredOffsets = append(rec.DeadLetteredOffsets, offset)
		return nil
	}
	if reason == failureRedeliver {
		at := now.Add(e.cfg.retryDelay(p.attempts[offset]))
		p.retry(offset, at)
		rec.RetryOffsets = append(rec.RetryOffsets, offset)
		rec.RetryAtMs = at.UnixMilli()
		return nil
	}
	p.release(offset)
	rec.FailedOffsets = append(rec.FailedOffsets, offset)
	batch.woke = true
	return nil
}

// submit queues a batch for the consumption's state writer and returns the
// channel that reports when it is durable. It must be called with c.mu held,
// which fixes the order of the state log; the caller waits after unlocking.
// Dead letters are written before the state records that say they moved,
// so that a crash in between duplicates a dead letter rather than losing one.
func (e *Engine) submit(c *consumption, batch *stateBatch) <-chan error {
	done := make(chan error, 1)
	if batch.empty() {
		done <- nil
		return done
	}
	if batch.woke {
		c.signalChanged()
	}
	ts := e.now().UnixMilli()
	pending := pendingState{deadLetters: batch.deadLetters, checkpointAt: -1, done: done}
	records := make([]*deliveryv1.StateRecord, 0, len(batch.order))
	for _, pi := range batch.order {
		records = append(records, batch.records[pi])
	}
	w := &c.writer
	// The loop may append a checkpoint to records, so it indexes.
	for i := 0; i < len(records); i++ {
		if i == len(batch.order) {
			pending.checkpointAt = len(pending.state)
		}
		payload, err := proto.Marshal(records[i])
		if err != nil {
			done <- fmt.Errorf("delivery: encoding state: %w", err)
			return done
		}
		pending.state = append(pending.state, &storagev1.Record{TimestampMs: ts, Payload: payload})
		if w.sinceCheckpoint += len(payload); i == len(records)-1 && pending.checkpointAt < 0 && w.sinceCheckpoint >= checkpointBytes {
			records = append(records, c.checkpointRecords()...)
			w.sinceCheckpoint = 0
		}
	}
	w.mu.Lock()
	w.pending = append(w.pending, pending)
	start := !w.active
	w.active = true
	w.mu.Unlock()
	if start {
		e.background.Go(func() { e.writeState(c) })
	}
	return done
}

// flush submits a batch and waits until it is durable.
func (e *Engine) flush(ctx context.Context, c *consumption, batch *stateBatch) error {
	select {
	case err := <-e.submit(c, batch):
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stateWriteTimeout bounds one state append; the writer does not use a
// caller's context because the change it makes durable is already applied.
const stateWriteTimeout = 30 * time.Second

// writeState drains the consumption's queue until it is empty.
func (e *Engine) writeState(c *consumption) {
	w := &c.writer
	for {
		w.mu.Lock()
		queued := w.pending
		w.pending = nil
		if len(queued) == 0 {
			w.active = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		var deadLetters, state []*storagev1.Record
		checkpointAt := -1
		for _, p := range queued {
			deadLetters = append(deadLetters, p.deadLetters...)
			if p.checkpointAt >= 0 {
				checkpointAt = len(state) + p.checkpointAt
			}
			state = append(state, p.state...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), stateWriteTimeout)
		_, err := e.appendChunked(ctx, logid.DeadLetters(c.queue.GetId(), c.group.GetId()), deadLetters)
		var offsets []int64
		if err == nil {
			offsets, err = e.appendChunked(ctx, c.stateLog, state)
		}
		cancel()
		if err == nil && checkpointAt >= 0 {
			e.background.Go(func() { e.trimState(c, offsets[checkpointAt]) })
		}
		if err != nil {
			e.logger.Error("delivery state not written", "log", c.key, "err", err)
		}
		for _, p := range queued {
			p.done <- err
		}
	}
}

// appendChunked appends records in appends of at most ~4 MiB and returns
// the offset each record got.
func (e *Engine) appendChunked(ctx context.Context, log logid.ID, records []*storagev1.Record) ([]int64, error) {
	offsets := make([]int64, 0, len(records))
	for len(records) > 0 {
		n, size := 0, 0
		for n < len(records) && (n == 0 || size+proto.Size(records[n]) <= 4<<20) {
			size += proto.Size(records[n])
			n++
		}
		resp, err := e.storage.Append(ctx, &storagev1.AppendRequest{Log: log, Records: records[:n]})
		if err != nil {
			return nil, err
		}
		for i := range n {
			offsets = append(offsets, resp.GetFirstOffset()+int64(i))
		}
		records = records[n:]
	}
	return offsets, nil
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

// readOne reads the record at offset, or nil when retention deleted it.
func (e *Engine) readOne(ctx context.Context, log logid.ID, offset int64) (*storagev1.StoredRecord, error) {
	resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: 1})
	if err != nil {
		return nil, err
	}
	if recs := resp.GetRecords(); len(recs) > 0 && recs[0].GetOffset() == offset {
		return recs[0], nil
	}
	return nil, nil
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

// AckRequest settles one delivery.
type AckRequest struct {
	Handle string
	Status dmsv1.AckStatus
}

// ackItem is an ack whose handle was decoded (or, for range acks, built from
// what a subscription delivered).
type ackItem struct {
	receipt receipt
	status  dmsv1.AckStatus
	err     error         // decoding failed
	extend  time.Duration // when set, not an ack: the delivery's new visibility
	log     string        // the key of the state log of the consumption it belongs to
}

// ack settles items against the consumptions they belong to, in order, and
// makes the results durable before returning.
func (e *Engine) ack(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, want consumptionKind, items []ackItem, stopAtFirstFailure bool) ([]*dmsv1.AckResult, error) {
	// Find and lock every consumption involved, in a fixed order.
	byLog := map[string]*consumption{}
	var owner receipt // the queue and group every handle must name
	if !owner.setOwner(q.GetId(), g.GetId()) {
		return nil, fmt.Errorf("delivery: queue %q or group %q has an id that is not a UUID", q.GetId(), g.GetId())
	}
	var last ackItem // the previous item's state log, reused while kind and consumer repeat
	for i, it := range items {
		if it.err != nil {
			continue
		}
		r := it.receipt
		if r.queue != owner.queue || r.group != owner.group {
			items[i].err = errs.Wrapf(errs.ErrReceiptHandleMismatch, "the receipt handle was issued for another queue or consumer group")
			continue
		}
		if (want == kindDeadLetters) != (r.kind == kindDeadLetters) {
			items[i].err = errs.Wrapf(errs.ErrReceiptHandleKind, "a dead-letter receipt handle settles only dead letters, and a message handle only messages")
			continue
		}
		if last.log != "" && last.receipt.kind == r.kind && last.receipt.consumerID == r.consumerID {
			items[i].log = last.log
		} else {
			items[i].log = logid.Key(stateLogID(r.kind, q.GetId(), g.GetId(), r.consumerID))
		}
		last = items[i]
		if name := items[i].log; byLog[name] == nil {
			loaded, err := e.consumption(ctx, r.kind, q, g, r.consumerID, startEarliest)
			if err != nil {
				return nil, err
			}
			byLog[name] = loaded
		}
	}
	logs := make([]string, 0, len(byLog))
	for log := range byLog {
		logs = append(logs, log)
	}
	slices.Sort(logs)
	for _, log := range logs {
		byLog[log].mu.Lock()
	}
	locked := true
	unlock := func() {
		if locked {
			for _, log := range logs {
				byLog[log].mu.Unlock()
			}
			locked = false
		}
	}
	defer unlock()
	now := e.now()
	batches := map[string]*stateBatch{}
	results := make([]*dmsv1.AckResult, len(items))
	stopped := false
	for i, it := range items {
		if stopped {
			results[i] = notApplied(errs.Wrapf(errs.ErrRequestInvalid, "not applied: an earlier ack in the request failed"))
			continue
		}
		err := it.err
		if err == nil {
			c := byLog[it.log]
			if batches[c.key] == nil {
				batches[c.key] = &stateBatch{}
			}
			err = e.settle(ctx, c, it, now, batches[c.key])
		}
		if err != nil {
			results[i] = notApplied(err)
		} else {
			results[i] = &dmsv1.AckResult{Applied: true}
		}
		if stopAtFirstFailure && (err != nil || !isSuccess(it.status)) {
			stopped = true
		}
	}
	var durable []<-chan error
	for _, log := range logs {
		if b := batches[log]; b != nil {
			durable = append(durable, e.submit(byLog[log], b))
		}
	}
	unlock()
	for _, done := range durable {
		if err := <-done; err != nil {
			return nil, err
		}
	}
	return results, nil
}

func isSuccess(s dmsv1.AckStatus) bool {
	return s == dmsv1.AckStatus_ACK_STATUS_UNSPECIFIED || s == dmsv1.AckStatus_ACK_STATUS_SUCCESS
}

func notApplied(err error) *dmsv1.AckResult {
	return &dmsv1.AckResult{Applied: false, ErrorReason: errs.Of(err).Reason, ErrorMessage: err.Error()}
}

// settle applies one ack to a consumption and adds it to the batch.
func (e *Engine) settle(ctx context.Context, c *consumption, it ackItem, now time.Time, batch *stateBatch) error {
	switch {
	case it.extend > 0:
	case it.status == dmsv1.AckStatus_ACK_STATUS_UNSPECIFIED, it.status == dmsv1.AckStatus_ACK_STATUS_SUCCESS, it.status == dmsv1.AckStatus_ACK_STATUS_FAIL:
	case it.status == dmsv1.AckStatus_ACK_STATUS_REDELIVER:
		if c.kind == kindDeadLetters {
			return errs.Wrapf(errs.ErrAckStatusInvalid, "dead letters are settled with success or fail, not redeliver")
		}
	default:
		return errs.Wrapf(errs.ErrAckStatusInvalid, "ack status %d is not success, fail or redeliver", it.status)
	}
	r := it.receipt
	if int(r.partition) >= len(c.parts) {
		return errs.Wrapf(errs.ErrReceiptHandleInvalid, "the receipt handle names a partition the queue does not have")
	}
	p := c.parts[r.partition]
	for _, offset := range p.due(now) {
		if err := e.fail(ctx, c, r.partition, offset, failureTimeout, now, batch); err != nil {
			return err
		}
	}
	if _, inflight := p.inflight[r.offset]; !inflight || p.attempts[r.offset] != r.count {
		return errs.Wrapf(errs.ErrReceiptHandleExpired, "the delivery is no longer current: it was already settled, its visibility timeout passed, or the message was delivered again")
	}
	if it.extend > 0 {
		deadline := now.Add(it.extend)
		p.extend(r.offset, deadline)
		rec := batch.rec(r.partition)
		rec.ExtendedOffsets = append(rec.ExtendedOffsets, r.offset)
		rec.ExtendedVisibleAtMs = deadline.UnixMilli()
		return nil
	}
	switch it.status {
	case dmsv1.AckStatus_ACK_STATUS_FAIL:
		return e.fail(ctx, c, r.partition, r.offset, failureByConsumer, now, batch)
	case dmsv1.AckStatus_ACK_STATUS_REDELIVER:
		return e.fail(ctx, c, r.partition, r.offset, failureRedeliver, now, batch)
	}
	p.settle(r.offset)
	rec := batch.rec(r.partition)
	rec.AckedOffsets = append(rec.AckedOffsets, r.offset)
	// A FIFO partition may be unblocked now: wake its waiting receivers.
	batch.woke = batch.woke || c.fifo()
	return nil
}
