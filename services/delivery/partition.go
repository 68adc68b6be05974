package delivery

import (
	"container/heap"
	"time"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/logid"
)

// partitionState is one consumption's view of one log. Offsets below
// ackFloor are settled unless redriven; from ackFloor to next every offset is
// acked, in flight, waiting for a retry, waiting for redelivery, or buffered
// for delivery. Memory holds only what is unsettled above the floor.
type partitionState struct {
	log logid.ID

	ackFloor int64               // every offset below is settled, unless redriven
	acked    offsetSet           // settled offsets at or above ackFloor, as ranges
	redriven map[int64]struct{}  // offsets below ackFloor given back by a redrive
	inflight map[int64]time.Time // delivered, invisible until the deadline
	retrying map[int64]time.Time // REDELIVER: invisible until the retry time
	attempts map[int64]int32     // deliveries so far of offsets not settled
	timers   deadlineHeap        // deadlines of inflight and retrying, pruned lazily
	ready    offsetHeap          // offsets to deliver again, lowest first

	// lost holds the offsets storage reported damaged beyond repair: settled
	// without delivery, counted in the group's stats and kept in
	// checkpoints as the record of what the group skipped.
	lost offsetSet

	buffered []*storagev1.StoredRecord // read from storage, not delivered yet
	next     int64                     // next offset to read from storage

	// Ordered (FIFO) partitions only: the ordering key of every busy offset,
	// how many busy offsets each key has, and records read past whose key
	// was busy, waiting in offset order.
	ordered  bool
	keys     map[int64]string
	busyKeys map[string]int
	held     []*storagev1.StoredRecord
}

// maxHeld bounds the records an ordered partition keeps waiting behind busy
// keys; past it the partition stops reading ahead (head-of-line blocking
// rather than unbounded memory).
const maxHeld = 10000

func newPartitionState(log logid.ID, ordered bool) *partitionState {
	p := &partitionState{log: log, ordered: ordered}
	p.reset(0)
	return p
}

// reset forgets everything: every offset from `from` on is undelivered.
func (p *partitionState) reset(from int64) {
	p.ackFloor, p.next = from, from
	p.acked = offsetSet{}
	p.redriven = map[int64]struct{}{}
	p.inflight = map[int64]time.Time{}
	p.retrying = map[int64]time.Time{}
	p.attempts = map[int64]int32{}
	p.timers, p.ready, p.buffered, p.held = nil, nil, nil, nil
	if p.ordered {
		p.keys, p.busyKeys = map[int64]string{}, map[string]int{}
	}
}

// track records the ordering key of an offset that became busy.
func (p *partitionState) track(offset int64, key string) {
	if !p.ordered {
		return
	}
	if _, ok := p.keys[offset]; ok {
		return
	}
	p.keys[offset] = key
	p.busyKeys[key]++
}

// untrack forgets the key of an offset that is no longer busy.
func (p *partitionState) untrack(offset int64) {
	if !p.ordered {
		return
	}
	key, ok := p.keys[offset]
	if !ok {
		return
	}
	delete(p.keys, offset)
	if p.busyKeys[key]--; p.busyKeys[key] <= 0 {
		delete(p.busyKeys, key)
	}
}

// blockedKeys returns the keys that have a message in flight or waiting for
// a retry: their later messages must wait.
func (p *partitionState) blockedKeys() map[string]bool {
	out := make(map[string]bool, len(p.busyKeys))
	for k := range p.busyKeys {
		out[k] = true
	}
	return out
}

// settled reports whether offset needs no delivery.
func (p *partitionState) settled(offset int64) bool {
	if offset < p.ackFloor {
		_, back := p.redriven[offset]
		return !back
	}
	return p.acked.contains(offset)
}

// busy reports whether offset is delivered or waiting for a retry.
func (p *partitionState) busy(offset int64) bool {
	_, inflight := p.inflight[offset]
	_, retrying := p.retrying[offset]
	return inflight || retrying
}

func (p *partitionState) deliver(offset int64, deadline time.Time) int32 {
	p.attempts[offset]++
	p.inflight[offset] = deadline
	heap.Push(&p.timers, deadlineEntry{deadline: deadline, offset: offset})
	return p.attempts[offset]
}

// settle marks offset done for good (acked, skipped or dead-lettered).
func (p *partitionState) settle(offset int64) {
	p.untrack(offset)
	delete(p.inflight, offset)
	delete(p.retrying, offset)
	delete(p.attempts, offset)
	if offset < p.ackFloor {
		delete(p.redriven, offset)
		return
	}
	p.acked.add(offset)
	if last, ok := p.acked.takeFrom(p.ackFloor); ok {
		p.ackFloor = last + 1
	}
}

// skipLost settles first..last, which storage reported lost, and records
// them as lost.
// It works on ranges: a lost range may hold millions of offsets.
func (p *partitionState) skipLost(first, last int64) {
	if last < first {
		return
	}
	p.settleRange(first, last)
	p.lost.addRange(first, last)
	p.next = max(p.next, last+1)
}

// settleRange settles first..last: the busy offsets in it one by one, the
// rest as one acked range.
func (p *partitionState) settleRange(first, last int64) {
	in := func(o int64) bool { return o >= first && o <= last }
	var busy []int64
	for o := range p.attempts {
		if in(o) {
			busy = append(busy, o)
		}
	}
	for _, m := range []map[int64]time.Time{p.inflight, p.retrying} {
		for o := range m {
			if in(o) {
				busy = append(busy, o)
			}
		}
	}
	for _, o := range busy {
		p.settle(o)
	}
	for o := range p.redriven {
		if in(o) {
			delete(p.redriven, o)
		}
	}
	if lo := max(first, p.ackFloor); lo <= last {
		p.acked.addRange(lo, last)
		if l, ok := p.acked.takeFrom(p.ackFloor); ok {
			p.ackFloor = l + 1
		}
	}
}

// release makes an offset available for delivery again at once.
func (p *partitionState) release(offset int64) {
	p.untrack(offset)
	delete(p.inflight, offset)
	delete(p.retrying, offset)
	heap.Push(&p.ready, offset)
}

// retry hides an offset until at, then releases it.
func (p *partitionState) retry(offset int64, at time.Time) {
	delete(p.inflight, offset)
	p.retrying[offset] = at
	heap.Push(&p.timers, deadlineEntry{deadline: at, offset: offset})
}

// redrive gives back an offset that was dead-lettered, with a fresh count.
func (p *partitionState) redrive(offset int64) {
	if offset < p.ackFloor {
		p.redriven[offset] = struct{}{}
	} else {
		p.acked.remove(offset)
	}
	delete(p.attempts, offset)
	heap.Push(&p.ready, offset)
}

// due pops every timer that passed: retries become available, in-flight
// deliveries whose visibility passed are returned as failed attempts.
func (p *partitionState) due(now time.Time) (expired []int64) {
	for p.timers.Len() > 0 && !p.timers[0].deadline.After(now) {
		e := heap.Pop(&p.timers).(deadlineEntry)
		if d, ok := p.inflight[e.offset]; ok && d.Equal(e.deadline) {
			expired = append(expired, e.offset)
		} else if d, ok := p.retrying[e.offset]; ok && d.Equal(e.deadline) {
			p.release(e.offset)
		}
	}
	return expired
}

// earliestTimer returns the next live deadline, if any.
func (p *partitionState) earliestTimer() (time.Time, bool) {
	for p.timers.Len() > 0 {
		e := p.timers[0]
		if d, ok := p.inflight[e.offset]; ok && d.Equal(e.deadline) {
			return e.deadline, true
		}
		if d, ok := p.retrying[e.offset]; ok && d.Equal(e.deadline) {
			return e.deadline, true
		}
		heap.Pop(&p.timers)
	}
	return time.Time{}, false
}

// skipTo moves the floor past offsets that retention deleted.
func (p *partitionState) skipTo(start int64) {
	if start <= p.ackFloor {
		for o := range p.redriven {
			if o < start {
				delete(p.redriven, o)
			}
		}
		return
	}
	p.acked.dropBelow(start)
	for o := range p.redriven {
		if o < start {
			delete(p.redriven, o)
		}
	}
	for o := range p.attempts {
		if o < start {
			delete(p.attempts, o)
			delete(p.inflight, o)
			delete(p.retrying, o)
		}
	}
	p.ackFloor = start
	if p.next < start {
		p.next, p.buffered = start, nil
	}
	if last, ok := p.acked.takeFrom(p.ackFloor); ok {
		p.ackFloor = last + 1 // over what was acked right after the new start
	}
}

// extend moves an in-flight offset's deadline.
func (p *partitionState) extend(offset int64, deadline time.Time) {
	if _, inflight := p.inflight[offset]; inflight {
		p.inflight[offset] = deadline
		heap.Push(&p.timers, deadlineEntry{deadline: deadline, offset: offset})
	}
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
