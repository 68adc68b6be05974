package partitionlog

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
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

// TestGroupCommit makes the group commit deterministic: the first fsync is
// held until the writer has written all 64 appends, so everything written
// meanwhile must be committed together with at most one more fsync.
func TestGroupCommit(t *testing.T) {
	const appenders = 64
	l := openTest(t, Options{})
	var handed atomic.Int32
	allWritten := make(chan struct{})
	var once sync.Once
	l.hooks = &testHooks{
		onHandOff: func(n int) {
			if handed.Add(int32(n)) == appenders {
				close(allWritten)
			}
		},
		beforeSync: func(*os.File) error { once.Do(func() { <-allWritten }); return nil },
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
	require.LessOrEqual(t, syncs, int64(2), "64 written appends must share fsyncs")
	slices.Sort(offs)
	for i, off := range offs {
		require.Equal(t, int64(i), off)
	}
	es, err := l.Read(0, 1<<20)
	require.NoError(t, err)
	require.Len(t, es, appenders)
	t.Logf("%d appends committed with %d fsyncs", appenders, syncs)
}

// TestPipelinedCommit: while an fsync runs, the writer goes on writing the
// next appends, but nothing becomes visible or is acknowledged before the
// fsync that covers it has returned.
func TestPipelinedCommit(t *testing.T) {
	l := openTest(t, Options{})
	release := make(chan struct{})
	inSync := make(chan struct{})
	var handed atomic.Int32
	var first sync.Once
	l.hooks = &testHooks{
		onHandOff: func(n int) { handed.Add(int32(n)) },
		beforeSync: func(*os.File) error {
			first.Do(func() { close(inSync); <-release })
			return nil
		},
	}
	ctx := context.Background()
	acked := make(chan int64, 10)
	go func() {
		off, err := l.Append(ctx, []Record{{Data: []byte("first")}})
		assert.NoError(t, err)
		acked <- off
	}()
	<-inSync // the first append's fsync is in progress
	for i := range 5 {
		go func() {
			off, err := l.Append(ctx, []Record{{Data: fmt.Appendf(nil, "next %d", i)}})
			assert.NoError(t, err)
			acked <- off
		}()
	}
	require.Eventually(t, func() bool { return handed.Load() == 6 }, 10*time.Second, time.Millisecond,
		"the writer must write the next appends while an fsync runs")
	fi, err := l.active.log.Stat()
	require.NoError(t, err)
	require.Greater(t, fi.Size(), int64(6*batchHeaderSize), "all six batches are in the file")
	require.Equal(t, int64(0), l.NextOffset(), "nothing is visible before its fsync")
	es, err := l.Read(0, 1<<20)
	require.NoError(t, err)
	require.Empty(t, es)
	select {
	case off := <-acked:
		t.Fatalf("append at %d acknowledged before its fsync", off)
	default:
	}
	close(release)
	var offs []int64
	for range 6 {
		offs = append(offs, <-acked)
	}
	slices.Sort(offs)
	require.Equal(t, []int64{0, 1, 2, 3, 4, 5}, offs)
	require.Equal(t, int64(6), l.NextOffset())
	require.LessOrEqual(t, l.syncs.Load(), int64(2))
}

// TestLinger: the syncer waits for the appends it expects before an fsync, so
// that closed-loop appenders share one fsync instead of alternating between
// two half groups; a lone sequential appender never makes it wait.
func TestLinger(t *testing.T) {
	t.Run("lone appender", func(t *testing.T) {
		l := openTest(t, Options{})
		var lingered atomic.Int32
		l.hooks = &testHooks{onLinger: func(int, int) { lingered.Add(1) }}
		for range 20 {
			_, err := l.Append(context.Background(), []Record{{Data: []byte("x")}})
			require.NoError(t, err)
		}
		require.Zero(t, lingered.Load())
	})
	t.Run("closed loop appenders", func(t *testing.T) {
		const appenders, rounds = 8, 30
		l := openTest(t, Options{})
		l.hooks = &testHooks{beforeSync: func(*os.File) error {
			time.Sleep(time.Millisecond) // a disk whose fsync dwarfs the appenders' turnaround
			return nil
		}}
		before := l.syncs.Load()
		var wg sync.WaitGroup
		for range appenders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					_, err := l.Append(context.Background(), []Record{{Data: []byte("x")}})
					assert.NoError(t, err)
				}
			}()
		}
		wg.Wait()
		syncs := l.syncs.Load() - before
		t.Logf("%d appends, %d fsyncs", appenders*rounds, syncs)
		// Without the linger it would be about 2*rounds.
		require.Less(t, syncs, int64(rounds*3/2))
	})
}
