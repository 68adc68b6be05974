package delivery

import (
	"context"
	"time"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
)

// checkpointBytes is how much state a consumption appends between two
// checkpoints. A checkpoint lets storage drop the state log before it, so a
// restart replays at most about this much plus one segment.
var checkpointBytes = 16 << 20

// snapshot returns the partition's whole state.
func (p *partitionState) snapshot() *deliveryv1.PartitionSnapshot {
	s := &deliveryv1.PartitionSnapshot{AckFloor: p.ackFloor}
	for _, r := range p.acked.ranges {
		s.Acked = append(s.Acked, &deliveryv1.OffsetSpan{First: r.first, Last: r.last})
	}
	for o := range p.redriven {
		s.Redriven = append(s.Redriven, o)
	}
	for _, r := range p.lost.ranges {
		s.Lost = append(s.Lost, &deliveryv1.OffsetSpan{First: r.first, Last: r.last})
	}
	for o, attempts := range p.attempts {
		pending := &deliveryv1.PendingOffset{Offset: o, Attempts: attempts}
		if d, ok := p.inflight[o]; ok {
			pending.AvailableAtMs = d.UnixMilli()
			s.InFlight = append(s.InFlight, pending)
		} else if at, ok := p.retrying[o]; ok {
			pending.AvailableAtMs = at.UnixMilli()
			s.Retrying = append(s.Retrying, pending)
		} else {
			s.Attempted = append(s.Attempted, pending)
		}
	}
	return s
}

// restore replaces the partition's state with a snapshot.
func (p *partitionState) restore(s *deliveryv1.PartitionSnapshot) {
	p.reset(s.GetAckFloor())
	for _, r := range s.GetAcked() {
		p.acked.addRange(r.GetFirst(), r.GetLast())
	}
	for _, o := range s.GetRedriven() {
		p.redriven[o] = struct{}{}
	}
	p.lost = offsetSet{}
	for _, r := range s.GetLost() {
		p.lost.addRange(r.GetFirst(), r.GetLast())
	}
	for _, pending := range s.GetInFlight() {
		p.attempts[pending.GetOffset()] = pending.GetAttempts() - 1
		p.deliver(pending.GetOffset(), time.UnixMilli(pending.GetAvailableAtMs()))
	}
	for _, pending := range s.GetRetrying() {
		p.attempts[pending.GetOffset()] = pending.GetAttempts()
		p.retry(pending.GetOffset(), time.UnixMilli(pending.GetAvailableAtMs()))
	}
	for _, pending := range s.GetAttempted() {
		p.attempts[pending.GetOffset()] = pending.GetAttempts()
	}
}

// checkpointRecords returns one snapshot record per partition, the first
// also carrying the tag filter.
func (c *consumption) checkpointRecords() []*deliveryv1.StateRecord {
	out := make([]*deliveryv1.StateRecord, len(c.parts))
	for i, p := range c.parts {
		out[i] = &deliveryv1.StateRecord{Partition: int32(i), Snapshot: p.snapshot()}
	}
	out[0].TagFilter = c.filter
	return out
}

// checkpointWritten notes a checkpoint at offset and trims the state log
// before the oldest checkpoint kept (Config.StateHistoryCheckpoints before
// the latest), which keeps that much history for message traces.
func (e *Engine) checkpointWritten(c *consumption, offset int64) {
	w := &c.writer
	w.checkpoints = append(w.checkpoints, offset)
	keep := max(0, e.cfg.StateHistoryCheckpoints)
	if len(w.checkpoints) <= keep {
		return
	}
	at := w.checkpoints[len(w.checkpoints)-1-keep]
	w.checkpoints = append(w.checkpoints[:0], w.checkpoints[len(w.checkpoints)-1-keep:]...)
	e.background.Go(func() { e.trimState(c, at) })
}

// trimState asks storage to drop the state log before a checkpoint. It is
// housekeeping: a failure only means a longer replay, so it is logged.
func (e *Engine) trimState(c *consumption, checkpointOffset int64) {
	ctx, cancel := context.WithTimeout(context.Background(), stateWriteTimeout)
	defer cancel()
	if _, err := e.storage.TrimLog(ctx, &storagev1.TrimLogRequest{Log: c.stateLog, BeforeOffset: checkpointOffset, WriterEpoch: c.epoch}); err != nil {
		e.logger.Warn("delivery state log not trimmed", "log", c.key, "err", err)
	}
}
