package delivery

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Stats returns the consumption counts of a group and its tag filter.
func (e *Engine) Stats(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) (*dmsv1.ConsumerGroupStats, *dmsv1.TagFilter, error) {
	c, err := e.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return nil, nil, err
	}
	stats := &dmsv1.ConsumerGroupStats{}
	oldest, err := e.count(ctx, c, stats)
	if err != nil {
		return nil, nil, err
	}
	if oldest > 0 {
		stats.OldestUnackedAge = durationpb.New(max(0, e.now().Sub(time.UnixMilli(oldest))))
	}
	if q.GetDeadLetterEnabled() {
		dl, err := e.consumption(ctx, kindDeadLetters, q, g, "", startEarliest)
		if err != nil {
			return nil, nil, err
		}
		dlStats := &dmsv1.ConsumerGroupStats{}
		if _, err := e.count(ctx, dl, dlStats); err != nil {
			return nil, nil, err
		}
		stats.ProducedDeadLetters, stats.AvailableDeadLetters = dlStats.GetProducedMessages(), dlStats.GetAvailableMessages()
	}
	c.mu.Lock()
	filter := c.filter
	c.mu.Unlock()
	return stats, filter, nil
}

// count adds a consumption's counts to stats and returns the publish time of
// its oldest unacked message (0 when none).
func (e *Engine) count(ctx context.Context, c *consumption, stats *dmsv1.ConsumerGroupStats) (int64, error) {
	info, err := e.storage.GetLogInfo(ctx, &storagev1.GetLogInfoRequest{Logs: c.logs})
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch stateBatch
	if err := e.expire(ctx, c, e.now(), &batch); err != nil {
		return 0, err
	}
	if err := e.flush(ctx, c, &batch); err != nil {
		return 0, err
	}
	var oldest int64
	for i, li := range info.GetLogs() {
		p := c.parts[i]
		start, next := li.GetStartOffset(), li.GetNextOffset()
		consumed := max(0, min(p.ackFloor, next)-start) - int64(len(p.redriven)) + p.acked.countIn(start, next)
		// Lost offsets are settled but were never acknowledged: counted
		// apart, neither consumed nor available.
		lost := p.lost.countIn(start, next)
		stats.ProducedMessages += next - start
		stats.ConsumedMessages += consumed - lost
		stats.InFlightMessages += int64(len(p.inflight))
		stats.LostMessages += lost
		if p.ackFloor < next {
			if r, err := e.readOne(ctx, p.log, max(p.ackFloor, start)); err == nil && r != nil {
				if ts := r.GetRecord().GetTimestampMs(); oldest == 0 || ts < oldest {
					oldest = ts
				}
			}
		}
	}
	stats.AvailableMessages = stats.ProducedMessages - stats.ConsumedMessages - stats.LostMessages
	return oldest, nil
}
