package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/storage/partitionlog"
)

// dedupWindow is how many of a log's latest records an idempotence key is
// remembered for: a retry must come while its first attempt is among them.
const dedupWindow = 100_000

// dedupIndex remembers the idempotence keys of a log's recent appends. It is
// built from the log's tail the first time a keyed append reaches the log,
// so it survives a crash: the key travels on each append's first record.
type dedupIndex struct {
	mu    sync.Mutex
	byKey map[string]*keyedAppend
	order []*keyedAppend // oldest first, for eviction
}

// keyedAppend is one append made with a key; done is closed once it is
// stored (or failed, when first is -1).
type keyedAppend struct {
	key   string
	first int64
	count int
	done  chan struct{}
}

// dedup returns the log's index, building it from the log's tail once.
func (e *Engine) dedup(l *openLog) (*dedupIndex, error) {
	name := logid.Key(l.id)
	e.mu.Lock()
	ix := e.dedups[name]
	if ix == nil {
		ix = &dedupIndex{}
		e.dedups[name] = ix
	}
	e.mu.Unlock()
	ix.mu.Lock()
	defer ix.mu.Unlock()
	if ix.byKey != nil {
		return ix, nil
	}
	byKey := map[string]*keyedAppend{}
	var order []*keyedAppend
	for from := max(l.StartOffset(), l.NextOffset()-dedupWindow); from < l.NextOffset(); {
		batches, err := l.ReadBatches(from, 4<<20)
		var lost *partitionlog.LostRangeError
		if errors.As(err, &lost) {
			from = lost.To + 1 // lost data has no keys to remember
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("storage: rebuilding idempotence keys of %s: %w", logid.Describe(l.id), err)
		}
		if len(batches) == 0 {
			break
		}
		for _, b := range batches {
			from = b.BaseOffset + int64(b.Count)
			if b.Format != partitionlog.FormatRecords {
				continue // Kafka batches carry their producers' sequences instead
			}
			// The key travels on an append's first record, which is the
			// first of its batch: only that one is decoded.
			err := partitionlog.ForEachRecord(b, func(offset, _ int64, data []byte) bool {
				rec := &storagev1.Record{}
				if proto.Unmarshal(data, rec) == nil && rec.GetIdempotenceKey() != "" {
					a := &keyedAppend{key: rec.GetIdempotenceKey(), first: offset, count: int(rec.GetIdempotentCount()), done: closed}
					byKey[a.key] = a
					order = append(order, a)
				}
				return false
			})
			if err != nil {
				return nil, fmt.Errorf("storage: rebuilding idempotence keys of %s: %w", logid.Describe(l.id), err)
			}
		}
	}
	ix.byKey, ix.order = byKey, order
	return ix, nil
}

var closed = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// claim returns the earlier append with key (earlier), or registers this
// one as pending and returns it (mine).
func (ix *dedupIndex) claim(key string, next int64) (earlier, mine *keyedAppend) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	for len(ix.order) > 0 && ix.order[0].first >= 0 && ix.order[0].first < next-dedupWindow {
		delete(ix.byKey, ix.order[0].key)
		ix.order = ix.order[1:]
	}
	if a := ix.byKey[key]; a != nil {
		return a, nil
	}
	a := &keyedAppend{key: key, first: -1, done: make(chan struct{})}
	ix.byKey[key] = a
	ix.order = append(ix.order, a)
	return nil, a
}

// settle completes a pending append; a failed one is forgotten so that a
// retry can store the batch.
func (ix *dedupIndex) settle(a *keyedAppend, first int64, count int, err error) {
	ix.mu.Lock()
	if err != nil {
		delete(ix.byKey, a.key)
	} else {
		a.first, a.count = first, count
	}
	ix.mu.Unlock()
	close(a.done)
}

// appendIdempotent appends records unless an earlier append carried key.
func (e *Engine) appendIdempotent(ctx context.Context, l *openLog, key string, records []*storagev1.Record) (*storagev1.AppendResponse, error) {
	ix, err := e.dedup(l)
	if err != nil {
		return nil, err
	}
	var mine *keyedAppend
	for {
		var earlier *keyedAppend
		earlier, mine = ix.claim(key, l.NextOffset())
		if earlier == nil {
			break
		}
		select {
		case <-earlier.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if earlier.first < 0 {
			continue // the earlier attempt failed: this one may store the batch
		}
		return e.duplicateOf(l, earlier)
	}
	first := &storagev1.Record{}
	proto.Merge(first, records[0])
	first.IdempotenceKey, first.IdempotentCount = key, int32(len(records))
	keyed := append([]*storagev1.Record{first}, records[1:]...)
	// Not cancelled with the caller: an append whose caller gave up may
	// still be written, and its key must then be remembered, or the retry
	// that follows would store the records a second time.
	offset, err := e.appendRecords(context.WithoutCancel(ctx), l, keyed)
	ix.settle(mine, offset, len(records), err)
	if err != nil {
		return nil, err
	}
	return &storagev1.AppendResponse{FirstOffset: offset}, nil
}

// duplicateOf answers a retry with what the first attempt stored.
func (e *Engine) duplicateOf(l *openLog, a *keyedAppend) (*storagev1.AppendResponse, error) {
	resp := &storagev1.AppendResponse{FirstOffset: a.first, Duplicate: true}
	for from := a.first; from < a.first+int64(a.count); {
		entries, err := l.Read(from, 4<<20)
		if err != nil || len(entries) == 0 {
			return nil, fmt.Errorf("storage: reading back the first attempt of a retried append to %s: %w", logid.Describe(l.id), err)
		}
		for _, en := range entries {
			if en.Offset >= a.first+int64(a.count) {
				break
			}
			rec := &storagev1.Record{}
			if err := proto.Unmarshal(en.Data, rec); err != nil {
				return nil, fmt.Errorf("storage: %s offset %d: %w", logid.Describe(l.id), en.Offset, err)
			}
			resp.MessageIds = append(resp.MessageIds, rec.GetMessageId())
			from = en.Offset + 1
		}
	}
	return resp, nil
}
