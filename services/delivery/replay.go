package delivery

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/storage/logid"
)

// load replays the consumption's state log; one without state starts at the
// earliest retained message, or after the latest when asked to.
func (e *Engine) load(ctx context.Context, c *consumption, start startPosition) error {
	c.parts = make([]*partitionState, len(c.logs))
	for i, log := range c.logs {
		c.parts[i] = newPartitionState(log, c.fifo())
	}
	replayed := 0
	for offset := int64(0); ; {
		// The owner's epoch makes the first read a fencing one: storage
		// refuses the writes of older owners from then on and waits for
		// those it accepted, so the replay sees all they were told stored.
		resp, err := e.storage.Read(ctx, &storagev1.ReadRequest{Log: c.stateLog, Offset: offset, MaxBytes: 4 << 20, WriterEpoch: c.epoch})
		if err != nil {
			return err
		}
		for _, r := range resp.GetRecords() {
			offset = r.GetOffset() + 1
			rec, err := decodeStateRecord(r.GetRecord().GetPayload(), len(c.parts))
			if err != nil {
				// Skipped like a lost record: what it said is forgotten
				// (messages it settled are delivered again), and the
				// group loads rather than staying down for good.
				e.logger.Error("delivery: skipping a state record that does not decode; messages it settled may be delivered again",
					"log", c.key, "offset", r.GetOffset(), "err", err)
				continue
			}
			if rec.GetTagFilter() != nil {
				c.filter = rec.GetTagFilter()
			}
			c.parts[rec.GetPartition()].replay(rec)
			replayed++
		}
		if lost := resp.GetLost(); lost != nil && len(resp.GetRecords()) == 0 {
			// State records damaged beyond repair: what they said is
			// forgotten, so messages they acknowledged are delivered again
			// (at least once), never lost.
			e.logger.Error("delivery: state records of the group are lost (damaged on disk); messages they settled may be delivered again",
				"log", c.key, "fromOffset", lost.GetFirstOffset(), "toOffset", lost.GetLastOffset())
			offset = lost.GetLastOffset() + 1
			continue
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
				if r == nil && o < info.GetLogs()[i].GetStartOffset() {
					continue // deleted by retention: nothing to hold back
				}
				if r == nil {
					// Not readable yet: above the high watermark of a
					// partition whose leader just changed. Loading without
					// its key would let the key's later messages overtake it.
					return errs.Wrapf(errs.ErrUnavailable, "delivery: message %d of %s is in flight but cannot be read yet (its partition is changing leaders); the group loads on the next call",
						o, logid.Describe(p.log))
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

// decodeStateRecord decodes one state-log record of a consumption with
// parts partitions and checks that it can be replayed: a known partition,
// every offset in [0, MaxInt64), spans with first <= last. Storage checksums
// what it stores, so a record that fails here was written wrong, not
// damaged on disk; load skips it (at least once: what it settled is
// delivered again) instead of failing for good. Whatever bytes it is given,
// it neither panics nor returns a record whose replay could (FuzzStateRecord).
func decodeStateRecord(payload []byte, parts int) (*deliveryv1.StateRecord, error) {
	rec := &deliveryv1.StateRecord{}
	if err := proto.Unmarshal(payload, rec); err != nil {
		return nil, fmt.Errorf("delivery: state record: %w", err)
	}
	if p := rec.GetPartition(); p < 0 || int(p) >= parts {
		return nil, fmt.Errorf("delivery: state record of partition %d; the queue has %d", p, parts)
	}
	bad := func(what string, o int64) error {
		return fmt.Errorf("delivery: state record of partition %d: %s offset %d is out of range", rec.GetPartition(), what, o)
	}
	lists := []struct {
		what    string
		offsets []int64
	}{{"delivered", rec.GetDeliveredOffsets()}, {"acked", rec.GetAckedOffsets()}, {"failed", rec.GetFailedOffsets()},
		{"retry", rec.GetRetryOffsets()}, {"dead-lettered", rec.GetDeadLetteredOffsets()}, {"redriven", rec.GetRedrivenOffsets()},
		{"extended", rec.GetExtendedOffsets()}}
	spans := [][]*deliveryv1.OffsetSpan{rec.GetLostOffsets()}
	if rec.SeekOffset != nil {
		lists = append(lists, struct {
			what    string
			offsets []int64
		}{"seek", []int64{rec.GetSeekOffset()}})
	}
	if s := rec.GetSnapshot(); s != nil {
		snap := []int64{s.GetAckFloor()}
		for _, l := range [][]*deliveryv1.PendingOffset{s.GetInFlight(), s.GetRetrying(), s.GetAttempted()} {
			for _, p := range l {
				snap = append(snap, p.GetOffset())
			}
		}
		lists = append(lists, struct {
			what    string
			offsets []int64
		}{"snapshot", append(snap, s.GetRedriven()...)})
		spans = append(spans, s.GetAcked(), s.GetLost())
	}
	for _, l := range lists {
		for _, o := range l.offsets {
			if o < 0 || o == math.MaxInt64 {
				return nil, bad(l.what, o)
			}
		}
	}
	for _, l := range spans {
		for _, sp := range l {
			if sp.GetFirst() < 0 || sp.GetLast() < sp.GetFirst() || sp.GetLast() == math.MaxInt64 {
				return nil, fmt.Errorf("delivery: state record of partition %d: span %d to %d is out of range", rec.GetPartition(), sp.GetFirst(), sp.GetLast())
			}
		}
	}
	return rec, nil
}

// busyOffsets lists the offsets of a partition that are in flight or wait
// for a retry; after a replay their ordering keys must be read back.
func (p *partitionState) busyOffsets() []int64 {
	out := make([]int64, 0, len(p.inflight)+len(p.retrying))
	for o := range p.inflight {
		out = append(out, o)
	}
	for o := range p.retrying {
		out = append(out, o)
	}
	return out
}

// replay folds one state record into the partition.
func (p *partitionState) replay(rec *deliveryv1.StateRecord) {
	if rec.GetSnapshot() != nil {
		p.restore(rec.GetSnapshot())
		return
	}
	if rec.SeekOffset != nil {
		p.reset(rec.GetSeekOffset())
	}
	deadline := time.UnixMilli(rec.GetVisibleAtMs())
	for _, o := range rec.GetDeliveredOffsets() {
		if !p.settled(o) {
			p.deliver(o, deadline)
		}
	}
	for _, o := range rec.GetAckedOffsets() {
		p.settle(o)
	}
	for _, o := range rec.GetDeadLetteredOffsets() {
		p.settle(o)
	}
	for _, r := range rec.GetLostOffsets() {
		p.skipLost(r.GetFirst(), r.GetLast())
	}
	for _, o := range rec.GetFailedOffsets() {
		delete(p.inflight, o)
	}
	retryAt := time.UnixMilli(rec.GetRetryAtMs())
	for _, o := range rec.GetRetryOffsets() {
		if !p.settled(o) {
			p.retry(o, retryAt)
		}
	}
	for _, o := range rec.GetRedrivenOffsets() {
		p.redrive(o)
	}
	extendedTo := time.UnixMilli(rec.GetExtendedVisibleAtMs())
	for _, o := range rec.GetExtendedOffsets() {
		p.extend(o, extendedTo)
	}
}

// finishReplay positions the reader after a replay: reading restarts at the
// floor and skips what is settled or busy, so offsets that failed or were
// never delivered come in order; redriven offsets below the floor wait in
// the redelivery heap.
func (p *partitionState) finishReplay() {
	p.next, p.buffered, p.ready, p.held = p.ackFloor, nil, nil, nil
	for o := range p.redriven {
		heap.Push(&p.ready, o)
	}
}
