package delivery

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// SeekTarget is where SeekConsumerGroup moves a group.
type SeekTarget struct {
	Time     *time.Time
	Offsets  map[int32]int64
	Position dmsv1.SeekPosition
}

// Seek moves a consumer group's position in every partition (or those given
// offsets): everything from there on is undelivered again.
func (e *Engine) Seek(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord, target SeekTarget) ([]*dmsv1.PartitionOffset, error) {
	c, err := e.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return nil, err
	}
	for p := range target.Offsets {
		if p < 0 || int(p) >= len(c.logs) {
			return nil, errs.Wrapf(errs.ErrSeekTargetInvalid, "queue %q has no partition %d", q.GetDisplayName(), p)
		}
	}
	if target.Time == nil && target.Offsets == nil &&
		target.Position != dmsv1.SeekPosition_SEEK_POSITION_EARLIEST && target.Position != dmsv1.SeekPosition_SEEK_POSITION_LATEST {
		return nil, errs.Wrapf(errs.ErrSeekTargetInvalid, "a seek needs a time, offsets, or the earliest or latest position")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: c.logs})
	if err != nil {
		return nil, err
	}
	var batch stateBatch
	var out []*dmsv1.PartitionOffset
	for i, p := range c.parts {
		pi := int32(i)
		start, next := info.GetLogs()[i].GetStartOffset(), info.GetLogs()[i].GetNextOffset()
		var offset int64
		switch {
		case target.Time != nil:
			resp, err := e.storage.FindOffset(ctx, &storagev1.FindOffsetRequest{Log: p.log, TimestampMs: target.Time.UnixMilli()})
			if err != nil {
				return nil, err
			}
			offset = resp.GetOffset()
		case target.Offsets != nil:
			o, ok := target.Offsets[pi]
			if !ok {
				out = append(out, &dmsv1.PartitionOffset{Partition: pi, Offset: p.ackFloor})
				continue
			}
			offset = o
		case target.Position == dmsv1.SeekPosition_SEEK_POSITION_EARLIEST:
			offset = start
		default:
			offset = next
		}
		offset = max(start, min(offset, next))
		p.reset(offset)
		batch.rec(pi).SeekOffset = proto.Int64(offset)
		out = append(out, &dmsv1.PartitionOffset{Partition: pi, Offset: offset})
	}
	batch.woke = true
	if err := e.flush(ctx, c, &batch); err != nil {
		return nil, err
	}
	e.logger.Info("consumer group seeked", "queue", q.GetId(), "group", g.GetId(), "positions", len(out))
	return out, nil
}
