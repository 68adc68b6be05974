package delivery

import (
	"container/heap"
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
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
