// Package delivery is the delivery role, the consumers' front door: per
// consumer group and partition it keeps the position, the acked set, the
// in-flight deliveries with their visibility deadlines and delivery counts,
// and it makes every change durable in the group's state log in storage
// before answering.
package delivery

import (
	"container/heap"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/delivery/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// Limits of a receive.
const (
	MaxReceiveMessages = 1000
	maxReceiveBytes    = 4 << 20
	readBytes          = 256 << 10
)

// Engine keeps the delivery state of the consumer groups it serves.
type Engine struct {
	storage storagev1.StorageServiceClient
	cache   *catalog.Cache
	signer  signer
	now     func() time.Time
	logger  *slog.Logger

	mu     sync.Mutex
	groups map[string]*groupState // queue id + "/" + group id
}

// groupState is the delivery state of one consumer group.
type groupState struct {
	queue *metadatav1.QueueRecord
	group *metadatav1.GroupRecord
	log   string

	mu       sync.Mutex
	loaded   bool
	parts    []*partitionState
	rotation int           // first partition to serve on the next receive
	changed  chan struct{} // closed when a failed message becomes available
}

// NewEngine returns a delivery engine. receiptKey signs receipt handles and
// must be the same in every delivery process of the cluster.
func NewEngine(storage storagev1.StorageServiceClient, cache *catalog.Cache, receiptKey []byte, now func() time.Time, logger *slog.Logger) *Engine {
	e := &Engine{storage: storage, cache: cache, signer: signer{key: receiptKey}, now: now, logger: logger, groups: map[string]*groupState{}}
	cache.Subscribe(e.onCatalogEvent)
	return e
}

func (e *Engine) onCatalogEvent(ev catalog.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch ev.Kind {
	case catalog.QueueDeleted:
		for key, g := range e.groups {
			if g.queue.GetId() == ev.QueueID {
				delete(e.groups, key)
			}
		}
	case catalog.GroupDeleted:
		delete(e.groups, ev.QueueID+"/"+ev.GroupID)
	}
}

// state returns the loaded state of a group, replaying its log on first use.
func (e *Engine) state(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) (*groupState, error) {
	key := q.GetId() + "/" + g.GetId()
	e.mu.Lock()
	gs := e.groups[key]
	if gs == nil {
		gs = &groupState{queue: q, group: g, log: catalog.DeliveryStateLog(q.GetId(), g.GetId()), changed: make(chan struct{})}
		e.groups[key] = gs
	}
	e.mu.Unlock()
	gs.mu.Lock()
	defer gs.mu.Unlock()
	if !gs.loaded {
		if err := e.load(ctx, gs); err != nil {
			return nil, err
		}
		gs.loaded = true
	}
	return gs, nil
}

// load replays the group's state log; a group without one starts at the
// earliest retained message of each partition.
func (e *Engine) load(ctx context.Context, gs *groupState) error {
	gs.parts = make([]*partitionState, gs.queue.GetPartitionCount())
	logs := make([]string, len(gs.parts))
	for i := range gs.parts {
		logs[i] = catalog.PartitionLog(gs.queue.GetId(), int32(i))
		gs.parts[i] = newPartitionState(logs[i])
	}
	replayed := 0
	for offset := int64(0); ; {
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: gs.log, Offset: offset, MaxBytes: 4 << 20})
		if err != nil {
			return err
		}
		for _, r := range resp.GetRecords() {
			rec := &deliveryv1.StateRecord{}
			if err := proto.Unmarshal(r.GetRecord().GetPayload(), rec); err != nil {
				return fmt.Errorf("delivery: state log %s offset %d: %w", gs.log, r.GetOffset(), err)
			}
			if p := int(rec.GetPartition()); p >= 0 && p < len(gs.parts) {
				gs.parts[p].replay(rec)
			}
			offset = r.GetOffset() + 1
			replayed++
		}
		if len(resp.GetRecords()) == 0 || offset >= resp.GetNextOffset() {
			break
		}
	}
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
	if err != nil {
		return err
	}
	for i, p := range gs.parts {
		p.finishReplay()
		if i < len(info.GetLogs()) {
			p.skipTo(info.GetLogs()[i].GetStartOffset())
		}
	}
	if replayed > 0 {
		e.logger.Info("delivery state loaded", "queue", gs.queue.GetId(), "group", gs.group.GetId(), "records", replayed)
	}
	return nil
}

// ReceiveOptions are the parameters of one receive.
type ReceiveOptions struct {
	MaxMessages int
	WaitTime    time.Duration
	Visibility  time.Duration
}

// Receive delivers up to opts.MaxMessages messages of the group, waiting up
// to opts.WaitTime for the first.
func (e *Engine) Receive(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, opts ReceiveOptions) ([]*dmsv1.ReceivedMessage, error) {
	gs, err := e.state(ctx, q, g)
	if err != nil {
		return nil, err
	}
	waitUntil := time.Now().Add(opts.WaitTime)
	for {
		gs.mu.Lock()
		msgs, err := e.collect(ctx, gs, opts)
		changed := gs.changed
		nextDeadline, hasDeadline := gs.earliestDeadline()
		readFrom := gs.readPositions()
		gs.mu.Unlock()
		if err != nil || len(msgs) > 0 {
			return msgs, err
		}
		wait := time.Until(waitUntil)
		if wait <= 0 {
			return nil, nil
		}
		if hasDeadline {
			wait = min(wait, max(nextDeadline.Sub(e.now()), time.Millisecond))
		}
		if err := e.waitForMessages(ctx, readFrom, changed, wait); err != nil {
			return nil, err
		}
	}
}

// collect takes what is available now and records the deliveries durably.
func (e *Engine) collect(ctx context.Context, gs *groupState, opts ReceiveOptions) ([]*dmsv1.ReceivedMessage, error) {
	now := e.now()
	deadline := now.Add(opts.Visibility)
	fifo := gs.queue.GetMode() == dmsv1.QueueMode_QUEUE_MODE_FIFO
	var (
		out     []*dmsv1.ReceivedMessage
		bytes   int
		records []*deliveryv1.StateRecord
	)
	n := len(gs.parts)
	for i := 0; i < n && len(out) < opts.MaxMessages && bytes < maxReceiveBytes; i++ {
		pi := (gs.rotation + i) % n
		p := gs.parts[pi]
		p.expire(now)
		if fifo && len(p.inflight) > 0 {
			continue // FIFO: nothing after a message that is still in flight
		}
		rec := &deliveryv1.StateRecord{Partition: int32(pi), VisibleAtMs: deadline.UnixMilli()}
		taken := 0
		// take marks the offset in flight at once, so that the scan below
		// skips a message the redelivery heap already handed out.
		take := func(r *storagev1.StoredRecord) {
			count := p.deliver(r.GetOffset(), deadline)
			rec.DeliveredOffsets = append(rec.DeliveredOffsets, r.GetOffset())
			out = append(out, e.received(gs, int32(pi), r, count))
			bytes += len(r.GetRecord().GetMessage().GetBody())
			taken++
		}
		full := func() bool { return len(out) >= opts.MaxMessages || bytes >= maxReceiveBytes }
		for p.ready.Len() > 0 && !full() {
			offset := heap.Pop(&p.ready).(int64)
			if _, inflight := p.inflight[offset]; inflight || p.settled(offset) {
				continue
			}
			r, err := e.readOne(ctx, p.log, offset)
			if err != nil {
				return nil, err
			}
			if r != nil {
				take(r)
			}
		}
		for !full() {
			if len(p.buffered) == 0 {
				resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: p.log, Offset: p.next, MaxBytes: readBytes})
				if err != nil {
					return nil, err
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
			if _, inflight := p.inflight[r.GetOffset()]; inflight || p.settled(r.GetOffset()) {
				continue
			}
			take(r)
		}
		if taken > 0 {
			records = append(records, rec)
		}
	}
	gs.rotation = (gs.rotation + 1) % n
	if len(records) > 0 {
		if err := e.persist(ctx, gs, records); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (e *Engine) received(gs *groupState, partition int32, r *storagev1.StoredRecord, count int32) *dmsv1.ReceivedMessage {
	return &dmsv1.ReceivedMessage{
		MessageId: r.GetRecord().GetMessageId(),
		ReceiptHandle: e.signer.encode(receipt{
			queueID: gs.queue.GetId(), groupID: gs.group.GetId(),
			partition: partition, offset: r.GetOffset(), count: count,
		}),
		Message:       r.GetRecord().GetMessage(),
		Partition:     partition,
		Offset:        r.GetOffset(),
		PublishTime:   timestamppb.New(time.UnixMilli(r.GetRecord().GetTimestampMs())),
		DeliveryCount: count,
	}
}

// readOne reads the record at offset, or nil when retention deleted it.
func (e *Engine) readOne(ctx context.Context, log string, offset int64) (*storagev1.StoredRecord, error) {
	resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: 1})
	if err != nil {
		return nil, err
	}
	if recs := resp.GetRecords(); len(recs) > 0 && recs[0].GetOffset() == offset {
		return recs[0], nil
	}
	return nil, nil
}

// persist appends state records to the group's log; the caller answers only
// after it returns.
func (e *Engine) persist(ctx context.Context, gs *groupState, records []*deliveryv1.StateRecord) error {
	ts := e.now().UnixMilli()
	out := make([]*storagev1.Record, len(records))
	for i, r := range records {
		payload, err := proto.Marshal(r)
		if err != nil {
			return fmt.Errorf("delivery: encoding state: %w", err)
		}
		out[i] = &storagev1.Record{TimestampMs: ts, Payload: payload}
	}
	_, err := e.storage.Append(ctx, &storagev1.AppendRequest{Log: gs.log, Records: out})
	return err
}

func (gs *groupState) earliestDeadline() (time.Time, bool) {
	var earliest time.Time
	found := false
	for _, p := range gs.parts {
		if d, ok := p.earliestDeadline(); ok && (!found || d.Before(earliest)) {
			earliest, found = d, true
		}
	}
	return earliest, found
}

// readPositions returns, per partition log, the offset a new message would
// have; FIFO partitions blocked by an in-flight message are left out.
func (gs *groupState) readPositions() map[string]int64 {
	out := map[string]int64{}
	fifo := gs.queue.GetMode() == dmsv1.QueueMode_QUEUE_MODE_FIFO
	for _, p := range gs.parts {
		if fifo && len(p.inflight) > 0 {
			continue
		}
		out[p.log] = p.next
	}
	return out
}

// waitForMessages blocks until a partition has a message past its read
// position, a failed message becomes available, or wait passes.
func (e *Engine) waitForMessages(ctx context.Context, readFrom map[string]int64, changed chan struct{}, wait time.Duration) error {
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	arrived := make(chan struct{}, len(readFrom))
	for log, offset := range readFrom {
		go func() {
			resp, err := e.storage.Read(wctx, &storagev1.ReadRequest{Log: log, Offset: offset, MaxBytes: 1, MaxWait: durationpb.New(wait)})
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

// Ack settles deliveries and makes the result durable before returning.
func (e *Engine) Ack(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, acks []AckRequest, stopAtFirstFailure bool) ([]*dmsv1.AckResult, error) {
	gs, err := e.state(ctx, q, g)
	if err != nil {
		return nil, err
	}
	results := make([]*dmsv1.AckResult, len(acks))
	gs.mu.Lock()
	defer gs.mu.Unlock()
	now := e.now()
	byPartition := map[int32]*deliveryv1.StateRecord{}
	failedAny := false
	stopped := false
	for i, a := range acks {
		if stopped {
			results[i] = notApplied(errs.Wrapf(errs.ErrRequestInvalid, "not applied: an earlier ack in the request failed"))
			continue
		}
		err := e.settle(gs, a, now, byPartition)
		results[i] = &dmsv1.AckResult{Applied: err == nil}
		if err != nil {
			results[i] = notApplied(err)
		} else if a.Status == dmsv1.AckStatus_ACK_STATUS_FAIL {
			failedAny = true
		}
		if stopAtFirstFailure && (err != nil || a.Status == dmsv1.AckStatus_ACK_STATUS_FAIL) {
			stopped = true
		}
	}
	if len(byPartition) > 0 {
		records := make([]*deliveryv1.StateRecord, 0, len(byPartition))
		for _, r := range byPartition {
			records = append(records, r)
		}
		if err := e.persist(ctx, gs, records); err != nil {
			return nil, err
		}
	}
	if failedAny {
		close(gs.changed)
		gs.changed = make(chan struct{})
	}
	return results, nil
}

func notApplied(err error) *dmsv1.AckResult {
	return &dmsv1.AckResult{Applied: false, ErrorReason: errs.Of(err).Reason, ErrorMessage: err.Error()}
}

// settle applies one ack to the in-memory state and adds it to the state
// record of its partition.
func (e *Engine) settle(gs *groupState, a AckRequest, now time.Time, byPartition map[int32]*deliveryv1.StateRecord) error {
	if a.Status != dmsv1.AckStatus_ACK_STATUS_UNSPECIFIED && a.Status != dmsv1.AckStatus_ACK_STATUS_SUCCESS && a.Status != dmsv1.AckStatus_ACK_STATUS_FAIL {
		return errs.Wrapf(errs.ErrAckStatusInvalid, "ack status %d is not success or fail", a.Status)
	}
	r, err := e.signer.decode(a.Handle)
	if err != nil {
		return err
	}
	if r.queueID != gs.queue.GetId() || r.groupID != gs.group.GetId() {
		return errs.Wrapf(errs.ErrReceiptHandleMismatch, "the receipt handle was issued for another queue or consumer group")
	}
	if int(r.partition) >= len(gs.parts) {
		return errs.Wrapf(errs.ErrReceiptHandleInvalid, "the receipt handle names a partition the queue does not have")
	}
	p := gs.parts[r.partition]
	p.expire(now)
	if _, inflight := p.inflight[r.offset]; !inflight || p.attempts[r.offset] != r.count {
		return errs.Wrapf(errs.ErrReceiptHandleExpired, "the delivery is no longer current: it was already settled, its visibility timeout passed, or the message was delivered again")
	}
	rec := byPartition[r.partition]
	if rec == nil {
		rec = &deliveryv1.StateRecord{Partition: r.partition}
		byPartition[r.partition] = rec
	}
	if a.Status == dmsv1.AckStatus_ACK_STATUS_FAIL {
		p.fail(r.offset)
		rec.FailedOffsets = append(rec.FailedOffsets, r.offset)
	} else {
		p.ack(r.offset)
		rec.AckedOffsets = append(rec.AckedOffsets, r.offset)
	}
	return nil
}

// Stats returns the consumption counts of a group.
func (e *Engine) Stats(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) (*dmsv1.ConsumerGroupStats, error) {
	gs, err := e.state(ctx, q, g)
	if err != nil {
		return nil, err
	}
	logs := make([]string, q.GetPartitionCount())
	for i := range logs {
		logs[i] = catalog.PartitionLog(q.GetId(), int32(i))
	}
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: logs})
	if err != nil {
		return nil, err
	}
	gs.mu.Lock()
	defer gs.mu.Unlock()
	stats := &dmsv1.ConsumerGroupStats{}
	for i, li := range info.GetLogs() {
		if i >= len(gs.parts) {
			break
		}
		p := gs.parts[i]
		start, next := li.GetStartOffset(), li.GetNextOffset()
		consumed := max(0, min(p.ackFloor, next)-start)
		for o := range p.acked {
			if o >= start && o < next {
				consumed++
			}
		}
		stats.ProducedMessages += next - start
		stats.ConsumedMessages += consumed
		stats.InFlightMessages += int64(len(p.inflight))
	}
	stats.AvailableMessages = stats.ProducedMessages - stats.ConsumedMessages
	return stats, nil
}
