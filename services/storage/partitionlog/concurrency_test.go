package partitionlog

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func concPayload(w, seq, j int) []byte {
	return fmt.Appendf(nil, "writer %d append %d record %d %s", w, seq, j, make([]byte, (w*31+seq*7+j)%100))
}

func TestConcurrentAppendsSync(t *testing.T) {
	const writers = 64
	perWriter := 40
	if testing.Short() {
		perWriter = 15
	}
	l := openTest(t, Options{SegmentBytes: 32 << 10, IndexIntervalBytes: 256})
	recsFor := func(w, seq int) []Record {
		recs := make([]Record, 1+(w+seq)%3)
		for j := range recs {
			recs[j] = Record{Timestamp: int64(seq), Data: concPayload(w, seq, j)}
		}
		return recs
	}
	total := int64(0)
	for w := range writers {
		for seq := range perWriter {
			total += int64(len(recsFor(w, seq)))
		}
	}

	// Followers read everything as it becomes visible, checking that offsets
	// are dense and every entry is well formed.
	ctx := context.Background()
	var readers sync.WaitGroup
	readerErrs := make(chan error, 3)
	for r := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			from := int64(0)
			for from < total {
				if err := l.WaitFor(ctx, from); err != nil {
					readerErrs <- err
					return
				}
				es, err := l.Read(from, 512<<r)
				if err != nil {
					readerErrs <- err
					return
				}
				for _, e := range es {
					if e.Offset != from {
						readerErrs <- fmt.Errorf("reader %d: got offset %d, want %d", r, e.Offset, from)
						return
					}
					var w, seq, j int
					if _, err := fmt.Sscanf(string(e.Data), "writer %d append %d record %d", &w, &seq, &j); err != nil {
						readerErrs <- fmt.Errorf("reader %d: offset %d: bad data %q", r, e.Offset, e.Data)
						return
					}
					from++
				}
			}
		}()
	}

	syncsBefore := l.syncs.Load()
	type ack struct {
		w, seq int
		off    int64
		n      int
	}
	acks := make([][]ack, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perWriter {
				recs := recsFor(w, seq)
				off, err := l.Append(ctx, recs)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				acks[w] = append(acks[w], ack{w, seq, off, len(recs)})
			}
		}()
	}
	wg.Wait()
	syncs := l.syncs.Load() - syncsBefore
	readers.Wait()
	close(readerErrs)
	for err := range readerErrs {
		require.NoError(t, err)
	}

	// Offsets are unique and consecutive: the acknowledged ranges tile
	// [0, total) exactly.
	var all []ack
	for _, a := range acks {
		all = append(all, a...)
	}
	require.Len(t, all, writers*perWriter)
	slices.SortFunc(all, func(a, b ack) int { return int(a.off - b.off) })
	next := int64(0)
	for _, a := range all {
		require.Equal(t, next, a.off)
		next += int64(a.n)
	}
	require.Equal(t, total, next)
	require.Equal(t, total, l.NextOffset())

	entries := readAll(t, l, 0, 1<<20)
	for _, a := range all {
		for j := range a.n {
			require.Equal(t, concPayload(a.w, a.seq, j), entries[a.off+int64(j)].Data)
		}
	}
	appends := int64(writers * perWriter)
	t.Logf("%d appends, %d fsyncs (%.1f appends per fsync)", appends, syncs, float64(appends)/float64(syncs))
	require.Less(t, syncs, appends, "concurrent appends must share fsyncs")
}

// TestGroupCommit makes the group commit deterministic: the writer's first
// fsync is held until all 64 appends are queued, so everything queued meanwhile
// must be committed together with at most one more fsync.
func TestGroupCommit(t *testing.T) {
	const appenders = 64
	l := openTest(t, Options{})
	var enqueued sync.WaitGroup
	enqueued.Add(appenders)
	var once sync.Once
	l.hooks = &testHooks{
		onEnqueue:  enqueued.Done,
		beforeSync: func(*os.File) error { once.Do(enqueued.Wait); return nil },
	}
	before := l.syncs.Load()
	offs := make([]int64, appenders)
	var wg sync.WaitGroup
	for i := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			off, err := l.Append(context.Background(), []Record{{Timestamp: int64(i), Data: []byte{byte(i)}}})
			if err != nil {
				t.Errorf("append: %v", err)
			}
			offs[i] = off
		}()
	}
	wg.Wait()
	syncs := l.syncs.Load() - before
	require.LessOrEqual(t, syncs, int64(2), "64 queued appends must share fsyncs")
	slices.Sort(offs)
	for i, off := range offs {
		require.Equal(t, int64(i), off)
	}
	es, err := l.Read(0, 1<<20)
	require.NoError(t, err)
	require.Len(t, es, appenders)
	t.Logf("%d appends committed with %d fsyncs", appenders, syncs)
}
