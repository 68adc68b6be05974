package scheduler

import (
	"time"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/message"
	"github.com/opendms/dms/services/storage/logid"
)

// prefetchInterval is how often the bodies of messages about to be due are
// read ahead.
const prefetchInterval = 20 * time.Millisecond

// prefetchKeepAhead is how many horizons ahead a message read on the way
// (between messages due sooner) is kept, budget permitting: it would be
// read again, one batch at a time, by a later round.
const prefetchKeepAhead = 8

// cacheOverhead is added to a message's size (body and attributes) to
// account for the memory its decoded record takes.
const cacheOverhead = 320

// cachedRecord is a record read ahead of its time, with its size.
type cachedRecord struct {
	rec  *storagev1.Record
	size int
}

func (b *bucket) uncache(offset int64) {
	if c, ok := b.cache[offset]; ok {
		b.cacheBytes -= c.size
		delete(b.cache, offset)
	}
}

// prefetchLoop reads the bodies of messages due within PrefetchAhead into
// memory, so that releasing them costs no read. Messages sent in due order
// sit side by side in their bucket and would be read in runs anyway; this
// is for the others (random delays), whose bodies a release would read one
// stored batch per message. Reading a window at once turns those into a few
// sequential scans.
func (sh *shard) prefetchLoop() { sh.everyTick(prefetchInterval, sh.prefetch) }

// prefetchItem is a message to read ahead.
type prefetchItem struct {
	b      *bucket
	offset int64
}

// prefetch stages the messages due before the horizon and reads their
// bodies. It works in rounds of half the horizon, so that a round reads
// many messages of a bucket at once: read as a few runs, not one by one.
func (sh *shard) prefetch() {
	ahead := sh.e.cfg.PrefetchAhead.Milliseconds()
	nowMs := sh.nowMs()
	if nowMs+ahead/2 < sh.stagedUntil {
		return
	}
	horizon := nowMs + ahead
	var want []prefetchItem
	sh.mu.Lock()
	bytes, cached := 0, 0
	for _, b := range sh.fireable {
		bytes += b.cacheBytes
		cached += len(b.cache)
	}
	avg := initialAvgBytes
	if cached > 0 {
		avg = max(bytes/cached, 1)
	}
	room := (sh.e.cfg.PrefetchBytes - bytes) / avg
	staged := 0
	for _, b := range sh.fireable {
		if b.queue.gone || room <= staged {
			continue
		}
		for _, k := range b.stage(horizon, room-staged) {
			staged++
			if _, ok := b.cache[offsetOf(k)]; !ok {
				want = append(want, prefetchItem{b, offsetOf(k)})
			}
		}
	}
	if staged < room {
		sh.stagedUntil = horizon
	}
	room -= len(want)
	sh.mu.Unlock()
	if len(want) == 0 {
		return
	}
	byBucket := map[*bucket][]int64{}
	for _, it := range want {
		byBucket[it.b] = append(byBucket[it.b], it.offset)
	}
	keepUntil := nowMs + prefetchKeepAhead*ahead
	for b, offsets := range byBucket {
		recs := make(map[int64]*storagev1.Record, len(offsets))
		extra := func(_ int64, r *storagev1.Record) bool {
			if r.GetMessageId() == "" || r.GetTimestampMs() > keepUntil || room <= 0 {
				return false
			}
			room--
			return true
		}
		if err := sh.fetch(sh.ctx, b, offsets, recs, extra); err != nil {
			if sh.ctx.Err() == nil {
				sh.logger.Warn("scheduler: reading scheduled messages ahead of their time", "log", logid.Key(b.log), "err", err)
			}
			return
		}
		sizes := make(map[int64]int, len(recs))
		for off, r := range recs {
			sizes[off] = message.Size(r.GetMessage()) + cacheOverhead
		}
		sh.mu.Lock()
		for off, r := range recs {
			// Released or cancelled meanwhile: not needed any more.
			if b.done.get(off) || b.deleting != nil || b.queue.gone {
				continue
			}
			if b.cache == nil {
				b.cache = map[int64]cachedRecord{}
			}
			if _, ok := b.cache[off]; !ok {
				b.cache[off] = cachedRecord{r, sizes[off]}
				b.cacheBytes += sizes[off]
			}
		}
		sh.mu.Unlock()
	}
}
