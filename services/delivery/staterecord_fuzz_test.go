package delivery

import (
	"cmp"
	"math"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	"github.com/opendms/dms/services/storage/logid"
)

// FuzzStateRecord replays arbitrary bytes as a state-log record into a
// consumption of two partitions (one FIFO) that already has state. Whatever
// the bytes, decoding and replay never panic or hang (a lost span of 2^62
// offsets is one range, not a loop); a record that decodeStateRecord refuses
// leaves the state as it was (load skips it); and the state afterwards
// survives a checkpoint: snapshot, restore and snapshot again give the same.
func FuzzStateRecord(f *testing.F) {
	seeds := []*deliveryv1.StateRecord{
		{Partition: 0, DeliveredOffsets: []int64{3, 4, 5}, VisibleAtMs: 1_700_000_000_000},
		{Partition: 1, AckedOffsets: []int64{0, 1, 2, 7}},
		{Partition: 0, FailedOffsets: []int64{4}, RetryOffsets: []int64{5}, RetryAtMs: 1_700_000_100_000},
		{Partition: 1, DeadLetteredOffsets: []int64{9}, RedrivenOffsets: []int64{1}},
		{Partition: 0, SeekOffset: proto.Int64(42)},
		{Partition: 0, ExtendedOffsets: []int64{3}, ExtendedVisibleAtMs: 1_800_000_000_000},
		{Partition: 1, LostOffsets: []*deliveryv1.OffsetSpan{{First: 10, Last: 1 << 40}}},
		{Partition: 0, Snapshot: &deliveryv1.PartitionSnapshot{AckFloor: 5,
			Acked:    []*deliveryv1.OffsetSpan{{First: 7, Last: 9}},
			Redriven: []int64{2},
			Lost:     []*deliveryv1.OffsetSpan{{First: 7, Last: 8}},
			InFlight: []*deliveryv1.PendingOffset{{Offset: 6, Attempts: 2, AvailableAtMs: 1_700_000_000_000}},
			Retrying: []*deliveryv1.PendingOffset{{Offset: 10, Attempts: 1, AvailableAtMs: 1_700_000_000_000}},
		}},
		{Partition: 2, AckedOffsets: []int64{1}},                                   // no such partition
		{Partition: 0, AckedOffsets: []int64{-1}},                                  // a negative offset
		{Partition: 0, LostOffsets: []*deliveryv1.OffsetSpan{{First: 5, Last: 4}}}, // an empty span
		{Partition: 0, LostOffsets: []*deliveryv1.OffsetSpan{{First: 0, Last: math.MaxInt64}}},
	}
	for _, r := range seeds {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		parts := []*partitionState{
			newPartitionState(logid.Partition("00000000-0000-0000-0000-000000000000", 0), false),
			newPartitionState(logid.Partition("00000000-0000-0000-0000-000000000000", 1), true),
		}
		for i, p := range parts {
			p.replay(&deliveryv1.StateRecord{Partition: int32(i), DeliveredOffsets: []int64{0, 1, 2, 3}, VisibleAtMs: 1_700_000_000_000})
			p.replay(&deliveryv1.StateRecord{Partition: int32(i), AckedOffsets: []int64{0, 2}})
			p.replay(&deliveryv1.StateRecord{Partition: int32(i), RetryOffsets: []int64{3}, RetryAtMs: 1_700_000_050_000})
		}
		before := []*deliveryv1.PartitionSnapshot{parts[0].snapshot(), parts[1].snapshot()}
		rec, err := decodeStateRecord(data, len(parts))
		if err != nil {
			for i, p := range parts {
				if !proto.Equal(sortedSnapshot(p.snapshot()), sortedSnapshot(before[i])) {
					t.Fatalf("a refused record changed partition %d", i)
				}
			}
			return
		}
		p := parts[rec.GetPartition()]
		p.replay(rec)
		p.finishReplay()
		p.skipTo(1)
		p.due(time.UnixMilli(1_750_000_000_000))
		if p.ackFloor < 0 {
			t.Fatalf("ack floor %d", p.ackFloor)
		}
		snap := p.snapshot()
		again := newPartitionState(p.log, p.ordered)
		again.restore(snap)
		if got, want := sortedSnapshot(again.snapshot()), sortedSnapshot(snap); !proto.Equal(got, want) {
			t.Fatalf("a checkpoint does not survive a restore:\n got %v\nwant %v", got, want)
		}
		if got, want := again.lost.len(), p.lost.len(); got != want {
			t.Fatalf("lost offsets: %d after a restore, %d before", got, want)
		}
	})
}

// sortedSnapshot orders the parts of a snapshot that come from maps.
func sortedSnapshot(s *deliveryv1.PartitionSnapshot) *deliveryv1.PartitionSnapshot {
	s = proto.CloneOf(s)
	slices.Sort(s.Redriven)
	for _, l := range [][]*deliveryv1.PendingOffset{s.InFlight, s.Retrying, s.Attempted} {
		slices.SortFunc(l, func(a, b *deliveryv1.PendingOffset) int { return cmp.Compare(a.GetOffset(), b.GetOffset()) })
	}
	return s
}
