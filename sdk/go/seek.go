package dms

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// SeekTarget is where Seek moves a consumer group. Make one with
// SeekToTime, SeekToOffsets, SeekToEarliest or SeekToLatest; the zero value
// is refused with ReasonSeekTargetInvalid.
type SeekTarget struct {
	target func(*dmsv1.SeekConsumerGroupRequest)
	desc   string
}

func (t SeekTarget) String() string {
	if t.desc == "" {
		return "no target"
	}
	return t.desc
}

// SeekToTime is the first message stored at or after t, in every partition.
func SeekToTime(t time.Time) SeekTarget {
	return SeekTarget{
		target: func(r *dmsv1.SeekConsumerGroupRequest) {
			r.Target = &dmsv1.SeekConsumerGroupRequest_Time{Time: timestamppb.New(t)}
		},
		desc: "time " + t.Format(time.RFC3339Nano),
	}
}

// SeekToOffsets is an offset per partition, keyed by partition; partitions
// not given keep their position. An offset outside what the partition
// retains is moved to its nearest end. A partition the queue lacks is
// refused with ReasonSeekTargetInvalid.
func SeekToOffsets(offsets map[int]int64) SeekTarget {
	po := make([]*dmsv1.PartitionOffset, 0, len(offsets))
	for p, o := range offsets {
		po = append(po, &dmsv1.PartitionOffset{Partition: int32(p), Offset: o})
	}
	return SeekTarget{
		target: func(r *dmsv1.SeekConsumerGroupRequest) {
			r.Target = &dmsv1.SeekConsumerGroupRequest_Offsets{Offsets: &dmsv1.PartitionOffsets{Offsets: po}}
		},
		desc: "offsets",
	}
}

// SeekToEarliest is the earliest retained message of every partition: the
// group gets everything the queue still retains again.
func SeekToEarliest() SeekTarget {
	return seekToPosition(dmsv1.SeekPosition_SEEK_POSITION_EARLIEST, "earliest")
}

// SeekToLatest is after the last message stored so far in every partition:
// the group skips everything not yet delivered.
func SeekToLatest() SeekTarget {
	return seekToPosition(dmsv1.SeekPosition_SEEK_POSITION_LATEST, "latest")
}

func seekToPosition(pos dmsv1.SeekPosition, desc string) SeekTarget {
	return SeekTarget{
		target: func(r *dmsv1.SeekConsumerGroupRequest) {
			r.Target = &dmsv1.SeekConsumerGroupRequest_Position{Position: pos}
		},
		desc: desc,
	}
}

// PartitionOffset is a position in one partition.
type PartitionOffset struct {
	Partition int
	Offset    int64
}

// Seek moves a consumer group's position to target and returns the new
// position of every partition. Messages from the new position on are
// delivered to the group again, even those it acked already; messages
// before it are skipped. Deliveries in flight are forgotten, their messages
// delivered again if they are at or after the new position; acks of them
// may no longer apply. The group's tag filter and dead letters, and its
// broadcast consumers, are not affected.
func (p *Project) Seek(ctx context.Context, queue, group string, target SeekTarget) ([]PartitionOffset, error) {
	req := &dmsv1.SeekConsumerGroupRequest{Group: p.groupResource(queue, group)}
	if target.target != nil {
		target.target(req)
	}
	resp, err := p.client.cons.SeekConsumerGroup(ctx, req)
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	out := make([]PartitionOffset, len(resp.GetPositions()))
	for i, po := range resp.GetPositions() {
		out[i] = PartitionOffset{Partition: int(po.GetPartition()), Offset: po.GetOffset()}
	}
	return out, nil
}
