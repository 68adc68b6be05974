package delivery

import (
	"container/heap"
	"time"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/delivery/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/storage/v1"
)

// partitionState is one consumer group's view of one queue partition.
// Offsets below ackFloor are settled; between ackFloor and next every offset
// is acked, in flight, waiting for redelivery, or buffered for delivery.
type partitionState struct {
	log string

	ackFloor int64              // every offset below is acked (or deleted by retention)
	acked    map[int64]struct{} // acked offsets at or above ackFloor
	inflight map[int64]time.Time
	attempts map[int64]int32 // deliveries so far of offsets not acked yet
	expiry   deadlineHeap    // in-flight deadlines, lazily pruned
	ready    offsetHeap      // offsets to deliver again, lowest first

	buffered []*storagev1.StoredRecord // read from storage, not delivered yet
	next     int64                     // next offset to read from storage
}

func newPartitionState(log string) *partitionState {
	return &partitionState{
		log:      log,
		acked:    map[int64]struct{}{},
		inflight: map[int64]time.Time{},
		attempts: map[int64]int32{},
	}
}

// settled reports whether offset needs no delivery.
func (p *partitionState) settled(offset int64) bool {
	if offset < p.ackFloor {
		return true
	}
	_, ok := p.acked[offset]
	return ok
}

func (p *partitionState) deliver(offset int64, deadline time.Time) int32 {
	p.attempts[offset]++
	p.inflight[offset] = deadline
	heap.Push(&p.expiry, deadlineEntry{deadline: deadline, offset: offset})
	return p.attempts[offset]
}

func (p *partitionState) ack(offset int64) {
	delete(p.inflight, offset)
	delete(p.attempts, offset)
	if offset < p.ackFloor {
		return
	}
	p.acked[offset] = struct{}{}
	for {
		if _, ok := p.acked[p.ackFloor]; !ok {
			return
		}
		delete(p.acked, p.ackFloor)
		p.ackFloor++
	}
}

// fail makes an in-flight offset available again.
func (p *partitionState) fail(offset int64) {
	delete(p.inflight, offset)
	heap.Push(&p.ready, offset)
}

// expire fails every in-flight offset whose deadline passed and returns
// whether any did.
func (p *partitionState) expire(now time.Time) bool {
	expired := false
	for p.expiry.Len() > 0 && !p.expiry[0].deadline.After(now) {
		e := heap.Pop(&p.expiry).(deadlineEntry)
		if d, ok := p.inflight[e.offset]; ok && d.Equal(e.deadline) {
			p.fail(e.offset)
			expired = true
		}
	}
	return expired
}

// earliestDeadline returns the next in-flight deadline, if any.
func (p *partitionState) earliestDeadline() (time.Time, bool) {
	for p.expiry.Len() > 0 {
		e := p.expiry[0]
		if d, ok := p.inflight[e.offset]; ok && d.Equal(e.deadline) {
			return e.deadline, true
		}
		heap.Pop(&p.expiry)
	}
	return time.Time{}, false
}

// skipTo moves the floor past offsets that retention deleted.
func (p *partitionState) skipTo(start int64) {
	if start <= p.ackFloor {
		return
	}
	for o := range p.acked {
		if o < start {
			delete(p.acked, o)
		}
	}
	for o := range p.attempts {
		if o < start {
			delete(p.attempts, o)
			delete(p.inflight, o)
		}
	}
	p.ackFloor = start
	if p.next < start {
		p.next, p.buffered = start, nil
	}
	p.ack(start - 1) // advances the floor over acked offsets that follow
}

// replay folds one state record into the partition.
func (p *partitionState) replay(rec *deliveryv1.StateRecord) {
	deadline := time.UnixMilli(rec.GetVisibleAtMs())
	for _, o := range rec.GetDeliveredOffsets() {
		if !p.settled(o) {
			p.deliver(o, deadline)
		}
	}
	for _, o := range rec.GetAckedOffsets() {
		p.ack(o)
	}
	for _, o := range rec.GetFailedOffsets() {
		delete(p.inflight, o)
	}
}

// finishReplay positions the reader after a replay: reading restarts at the
// floor and skips what is acked or in flight, so offsets that were failed or
// never delivered come in order.
func (p *partitionState) finishReplay() {
	p.next = p.ackFloor
	p.buffered = nil
	p.ready = nil
}

type deadlineEntry struct {
	deadline time.Time
	offset   int64
}

type deadlineHeap []deadlineEntry

func (h deadlineHeap) Len() int           { return len(h) }
func (h deadlineHeap) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlineHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *deadlineHeap) Push(x any)        { *h = append(*h, x.(deadlineEntry)) }
func (h *deadlineHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

type offsetHeap []int64

func (h offsetHeap) Len() int           { return len(h) }
func (h offsetHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h offsetHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *offsetHeap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *offsetHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
