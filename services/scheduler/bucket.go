package scheduler

import (
	"math/bits"
	"slices"
	"time"

	"github.com/opendms/dms/services/storage/logid"
)

// hourMs is the span of one timer bucket.
const hourMs = int64(3_600_000)

func hourOf(ms int64) int64 { return ms / hourMs }

// offsetBits is how many low bits of an index key hold the offset; the high
// 22 hold the due time within the bucket's hour (3 600 000 ms < 2^22).
const offsetBits = 42

// bucket is the state of one timer bucket: the scheduled messages of one
// queue due in one hour, kept in the log logid.TimerBucket. Every field
// is guarded by the owning shard's mutex.
//
// What a bucket costs in memory does not depend on message bodies: a few
// bits per record of its log (which records are messages, which are
// settled), plus, while the bucket is in the window (its hour is the current
// or the next one, or past), 8 bytes per pending message in a heap ordered
// by due time. Buckets further ahead are only counted; they are indexed when
// their hour comes near, by replaying their log.
type bucket struct {
	queue *queueTimers
	hour  int64
	log   logid.ID

	// replayed: the bitsets and pending cover the whole log, so that a
	// cancel can be answered; closed replayDone says so to waiters.
	replayed   bool
	replayDone chan struct{}
	// registered is closed once the bucket's etcd registration is known to
	// exist; regErr says why it could not be written.
	registered chan struct{}
	regErr     error

	entries   bitset // offsets of scheduled messages (the others are markers)
	done      bitset // released, being released, cancelled or being cancelled
	cancelled bitset // cancelled (or rescheduled away), or being cancelled
	pending   int64  // entries that are not done

	// indexed: the heap is kept, every pending entry added from now on is
	// pushed; fireable: the heap holds every pending entry, so due entries
	// can be released in order.
	indexed  bool
	fireable bool
	heap     keyHeap
	// staged are keys taken out of the heap, in due order, because they
	// are due within the prefetch horizon (see prefetch.go); inHeap marks
	// the offsets in the heap or staged.
	staged []uint64
	inHeap bitset
	// cache holds bodies read ahead of their time (see prefetch.go).
	cache      map[int64]cachedRecord
	cacheBytes int
	// reindex asks for a replay that pushes pending entries missing from
	// the heap (after an undone cancel whose due time is not known here).
	reindex bool
	// recomputedAt is when a replay last looked for the minimum (wall
	// clock), to bound those replays.
	recomputedAt time.Time
	// candidates are the smallest (due, offset) pairs seen by a bucket that
	// is not indexed, so that its next due time is known without reading
	// its log; minStale says every candidate was settled while entries are
	// left, and the minimum must be found again by a replay.
	candidates  []uint64
	excludedMin uint64
	minStale    bool

	// busy counts operations in flight that will change the bucket: appends,
	// releases, cancels. A bucket is deleted only when none is.
	busy int
	// deleting is non-nil while the bucket's log and registration are being
	// deleted; an append for its hour waits for it and starts a new bucket.
	deleting chan struct{}
}

func newBucket(qt *queueTimers, hour int64) *bucket {
	return &bucket{
		queue:       qt,
		hour:        hour,
		log:         logid.TimerBucket(qt.id, hour),
		replayDone:  make(chan struct{}),
		registered:  make(chan struct{}),
		excludedMin: noKey,
	}
}

func (b *bucket) key(offset, due int64) uint64 {
	return uint64(due-b.hour*hourMs)<<offsetBits | uint64(offset)
}

func (b *bucket) dueOf(key uint64) int64 { return b.hour*hourMs + int64(key>>offsetBits) }

func offsetOf(key uint64) int64 { return int64(key & (1<<offsetBits - 1)) }

// add records the scheduled message at offset. It is idempotent, so that a
// replay and the append that wrote the record may both report it.
func (b *bucket) add(offset, due int64) {
	if !b.entries.get(offset) {
		b.entries.set(offset)
		if !b.done.get(offset) {
			b.pending++
		}
	}
	if b.done.get(offset) {
		return
	}
	if b.indexed {
		if !b.inHeap.get(offset) {
			b.inHeap.set(offset)
			b.heap.push(b.key(offset, due))
		}
	} else {
		b.offerCandidate(b.key(offset, due))
	}
}

// settle marks offset released (or cancelled); idempotent.
func (b *bucket) settle(offset int64, cancelled bool) {
	if !b.done.get(offset) {
		b.done.set(offset)
		if b.entries.get(offset) {
			b.pending--
		}
	}
	if cancelled {
		b.cancelled.set(offset)
	}
}

// unsettle undoes a settle whose marker could not be written.
func (b *bucket) unsettle(offset, due int64) {
	if !b.done.get(offset) {
		return
	}
	b.done.clear(offset)
	b.cancelled.clear(offset)
	if !b.entries.get(offset) {
		return
	}
	b.pending++
	if b.indexed && b.inHeap.get(offset) {
		return
	}
	if due <= 0 {
		// The due time is not known here: a replay finds the entry again.
		if b.indexed {
			b.reindex = true
		} else {
			b.minStale = true
		}
		return
	}
	if b.indexed {
		b.inHeap.set(offset)
		b.heap.push(b.key(offset, due))
	} else {
		b.offerCandidate(b.key(offset, due))
	}
}

// head returns the earliest key of the heap and the staged list, dropping
// settled ones; fromStaged says where it is.
func (b *bucket) head() (k uint64, fromStaged, ok bool) {
	for len(b.staged) > 0 && b.done.get(offsetOf(b.staged[0])) {
		b.inHeap.clear(offsetOf(b.staged[0]))
		b.staged = b.staged[1:]
	}
	for len(b.heap) > 0 && b.done.get(offsetOf(b.heap[0])) {
		b.inHeap.clear(offsetOf(b.heap.pop()))
	}
	switch {
	case len(b.staged) > 0 && (len(b.heap) == 0 || b.staged[0] < b.heap[0]):
		return b.staged[0], true, true
	case len(b.heap) > 0:
		return b.heap[0], false, true
	}
	return 0, false, false
}

// popDue removes and returns the next pending entry due at or before nowMs.
func (b *bucket) popDue(nowMs int64) (offset, due int64, ok bool) {
	k, fromStaged, ok := b.head()
	if !ok || b.dueOf(k) > nowMs {
		return 0, 0, false
	}
	if fromStaged {
		b.staged = b.staged[1:]
	} else {
		b.heap.pop()
	}
	b.inHeap.clear(offsetOf(k))
	return offsetOf(k), b.dueOf(k), true
}

// stage moves the pending entries due at or before horizon from the heap
// to the staged list, at most n, and returns their keys.
func (b *bucket) stage(horizon int64, n int) []uint64 {
	first := len(b.staged)
	for len(b.staged)-first < n && len(b.heap) > 0 && b.dueOf(b.heap[0]) <= horizon {
		k := b.heap.pop()
		if b.done.get(offsetOf(k)) {
			b.inHeap.clear(offsetOf(k))
			continue
		}
		b.staged = append(b.staged, k)
	}
	return b.staged[first:]
}

// maxCandidates bounds the due times a bucket outside the window remembers.
const maxCandidates = 32

// offerCandidate keeps k if it is among the smallest keys offered; the
// smallest key ever left out is remembered, because below it the candidates
// are complete.
func (b *bucket) offerCandidate(k uint64) {
	if len(b.candidates) == maxCandidates {
		b.candidates = slices.DeleteFunc(b.candidates, func(c uint64) bool { return b.done.get(offsetOf(c)) })
	}
	i, found := slices.BinarySearch(b.candidates, k)
	if found {
		return
	}
	if len(b.candidates) == maxCandidates {
		if i == maxCandidates {
			b.excludedMin = min(b.excludedMin, k)
			return
		}
		b.excludedMin = min(b.excludedMin, b.candidates[maxCandidates-1])
		b.candidates = b.candidates[:maxCandidates-1]
	}
	b.candidates = slices.Insert(b.candidates, i, k)
}

// resetCandidates forgets the candidates before a replay offers them again.
func (b *bucket) resetCandidates() {
	b.candidates, b.excludedMin, b.minStale = b.candidates[:0], noKey, false
}

// noKey is larger than every index key.
const noKey = ^uint64(0)

// nextDue returns the due time of the earliest pending entry; exact is false
// when it is only a lower bound (a bucket outside the window whose earliest
// known entries were all cancelled). minStale then asks for a replay.
func (b *bucket) nextDue() (due int64, exact bool) {
	if b.pending == 0 {
		return 0, true
	}
	if b.fireable {
		if k, _, ok := b.head(); ok {
			return b.dueOf(k), true
		}
		return 0, true
	}
	for _, k := range b.candidates {
		if b.done.get(offsetOf(k)) {
			continue
		}
		if k < b.excludedMin {
			return b.dueOf(k), true
		}
		break
	}
	b.minStale = true
	if b.excludedMin != noKey {
		return b.dueOf(b.excludedMin), false
	}
	return b.hour * hourMs, false
}

// bitset is a growable set of small non-negative integers (log offsets).
type bitset []uint64

func (s bitset) get(i int64) bool {
	w := i >> 6
	return i >= 0 && w < int64(len(s)) && s[w]&(1<<(i&63)) != 0
}

func (s *bitset) set(i int64) {
	w := int(i >> 6)
	if w >= len(*s) {
		*s = append(*s, make([]uint64, w-len(*s)+1)...)
	}
	(*s)[w] |= 1 << (i & 63)
}

func (s bitset) clear(i int64) {
	if w := i >> 6; w < int64(len(s)) {
		s[w] &^= 1 << (i & 63)
	}
}

func (s bitset) count() int {
	n := 0
	for _, w := range s {
		n += bits.OnesCount64(w)
	}
	return n
}

// keyHeap is a binary min-heap of index keys.
type keyHeap []uint64

func (h *keyHeap) push(k uint64) {
	*h = append(*h, k)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if s[p] <= s[i] {
			break
		}
		s[p], s[i] = s[i], s[p]
		i = p
	}
}

func (h *keyHeap) pop() uint64 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if r < len(s) && s[r] < s[m] {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	if cap(s) > 1024 && len(s) < cap(s)/4 {
		// Give back the memory of a drained heap.
		*h = slices.Clone(s)
	}
	return top
}

func trailingZeros(w uint64) int { return bits.TrailingZeros64(w) }
