package partitionlog

import (
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type genSpec struct {
	batches    int
	maxRecs    int // records per batch: 1..maxRecs
	minSize    int
	maxSize    int
	monotonic  bool // timestamps never decrease
	tsJitterMs int64
}

func (g genSpec) generate(rng *rand.Rand, m *model, t *testing.T, l *Log, now int64) int64 {
	for range g.batches {
		n := 1 + rng.IntN(g.maxRecs)
		sizes := make([]int, n)
		tss := make([]int64, n)
		for i := range n {
			sizes[i] = g.minSize + rng.IntN(g.maxSize-g.minSize+1)
			if g.monotonic {
				now += rng.Int64N(g.tsJitterMs + 1)
				tss[i] = now
			} else {
				tss[i] = now + rng.Int64N(2*g.tsJitterMs+1) - g.tsJitterMs
				now += 3
			}
		}
		m.appendBatch(t, l, sizes, tss)
	}
	return now
}

func TestAppendReadAcrossSegments(t *testing.T) {
	cases := []struct {
		name         string
		segmentBytes int64
		interval     int
		durability   Durability
		gen          genSpec
		wantSegs     int // minimum number of segments
	}{
		{"one segment", 0, 0, DurabilitySync, genSpec{batches: 60, maxRecs: 5, minSize: 10, maxSize: 200, monotonic: true, tsJitterMs: 5}, 1},
		{"tiny segments", 512, 64, DurabilitySync, genSpec{batches: 120, maxRecs: 3, minSize: 1, maxSize: 80, monotonic: true, tsJitterMs: 2}, 10},
		{"non-monotonic timestamps", 1024, 100, DurabilitySync, genSpec{batches: 150, maxRecs: 4, minSize: 0, maxSize: 60, tsJitterMs: 500}, 5},
		{"batches larger than segments", 256, 64, DurabilitySync, genSpec{batches: 20, maxRecs: 2, minSize: 300, maxSize: 1200, monotonic: true, tsJitterMs: 1000}, 15},
		{"index entry per batch", 2048, 1, DurabilitySync, genSpec{batches: 150, maxRecs: 3, minSize: 0, maxSize: 40, monotonic: true, tsJitterMs: 3}, 3},
		{"empty payloads", 300, 50, DurabilitySync, genSpec{batches: 80, maxRecs: 10, minSize: 0, maxSize: 0, monotonic: true, tsJitterMs: 1}, 3},
		{"async", 1024, 128, DurabilityAsync, genSpec{batches: 150, maxRecs: 4, minSize: 1, maxSize: 100, tsJitterMs: 50}, 5},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ci), 7))
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: tc.segmentBytes, IndexIntervalBytes: tc.interval, Durability: tc.durability, Logger: quietLogger()}
			l, err := Open(opts)
			require.NoError(t, err)
			var m model
			now := tc.gen.generate(rng, &m, t, l, 1_700_000_000_000)
			checkLog(t, l, &m, 0)
			require.GreaterOrEqual(t, len(segmentLogs(t, dir)), tc.wantSegs)
			require.NoError(t, l.Close())

			// Reopen after a clean close: everything is still there, and
			// appending continues at the right offset.
			l, err = Open(opts)
			require.NoError(t, err)
			defer l.Close()
			checkLog(t, l, &m, 0)
			tc.gen.batches = 10
			tc.gen.generate(rng, &m, t, l, now)
			checkLog(t, l, &m, 0)
		})
	}
}

// checkLog verifies l against m: offsets, reads with various budgets and start
// points, and time lookups.
func checkLog(t *testing.T, l *Log, m *model, start int64) {
	t.Helper()
	want := m.entries[start:]
	require.Equal(t, start, l.StartOffset())
	require.Equal(t, m.next(), l.NextOffset())
	requireEntries(t, want, readAll(t, l, start, 1<<20))
	requireEntries(t, want, readAll(t, l, start, 0))
	requireEntries(t, want, readAll(t, l, start, 97))

	for from := start; from < m.next(); from += 1 + from%7 {
		const budget = 300
		es, err := l.Read(from, budget)
		require.NoError(t, err)
		require.NotEmpty(t, es)
		requireEntries(t, m.entries[from:from+int64(len(es))], es)
		if len(es) > 1 {
			used := 0
			for _, e := range es {
				used += max(len(e.Data), 1)
			}
			require.LessOrEqual(t, used, budget)
		}
	}
	es, err := l.Read(m.next(), 100)
	require.NoError(t, err)
	require.Empty(t, es)
	es, err = l.Read(m.next()+10, 100)
	require.NoError(t, err)
	require.Empty(t, es)

	probes := []int64{math.MinInt64, math.MaxInt64}
	for i := int(start); i < len(m.entries); i += 1 + i%5 {
		ts := m.entries[i].Timestamp
		probes = append(probes, ts-1, ts, ts+1)
	}
	for _, ts := range probes {
		got, err := l.OffsetForTime(ts)
		require.NoError(t, err)
		require.Equal(t, bruteOffsetForTime(want, start, ts), got, "OffsetForTime(%d)", ts)
	}
}

func TestEmptyLog(t *testing.T) {
	l := openTest(t, Options{})
	require.Equal(t, int64(0), l.StartOffset())
	require.Equal(t, int64(0), l.NextOffset())
	es, err := l.Read(0, 100)
	require.NoError(t, err)
	require.Empty(t, es)
	off, err := l.OffsetForTime(0)
	require.NoError(t, err)
	require.Equal(t, int64(0), off)
	off, err = l.Append(context.Background(), nil)
	require.NoError(t, err)
	require.Equal(t, int64(0), off)
	_, err = l.Read(-1, 100)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
}

func TestBatchTooLarge(t *testing.T) {
	l := openTest(t, Options{MaxBatchBytes: 1000})
	_, err := l.Append(context.Background(), []Record{{Data: make([]byte, 1000)}})
	require.ErrorIs(t, err, ErrBatchTooLarge)
	require.Contains(t, err.Error(), "partitionlog: batch too large")
	off, err := l.Append(context.Background(), []Record{{Data: make([]byte, 900)}})
	require.NoError(t, err)
	require.Equal(t, int64(0), off)
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Dir: t.TempDir(), SegmentBytes: -1},
		{Dir: t.TempDir(), SegmentBytes: 8 << 30},
		{Dir: t.TempDir(), MaxBatchBytes: 10},
		{Dir: t.TempDir(), Durability: 7},
	} {
		_, err := Open(o)
		require.Error(t, err)
		require.Contains(t, err.Error(), "partitionlog: invalid options")
	}
}

func TestDirectoryLocked(t *testing.T) {
	l := openTest(t, Options{})
	_, err := Open(Options{Dir: l.dir, Logger: quietLogger()})
	require.Error(t, err)
	require.NoError(t, l.Close())
	l2 := openTest(t, Options{Dir: l.dir})
	require.Equal(t, int64(0), l2.NextOffset())
}

func TestClosed(t *testing.T) {
	l := openTest(t, Options{})
	_, err := l.Append(context.Background(), []Record{{Data: []byte("x")}})
	require.NoError(t, err)
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.Close(), ErrClosed)
	_, err = l.Append(context.Background(), []Record{{Data: []byte("x")}})
	require.ErrorIs(t, err, ErrClosed)
	_, err = l.Read(0, 10)
	require.ErrorIs(t, err, ErrClosed)
	_, err = l.OffsetForTime(0)
	require.ErrorIs(t, err, ErrClosed)
	require.ErrorIs(t, l.WaitFor(context.Background(), 5), ErrClosed)
	_, err = l.EnforceRetention(time.Hour, 0)
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, l.Remove())
	_, err = os.Stat(l.dir)
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestAppendContextCancelled(t *testing.T) {
	l := openTest(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := l.Append(ctx, []Record{{Data: []byte("x")}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, int64(0), l.NextOffset())
}

func TestWaitFor(t *testing.T) {
	l := openTest(t, Options{})
	ctx := context.Background()

	// Wakes on append.
	woke := make(chan error, 1)
	go func() { woke <- l.WaitFor(ctx, 0) }()
	select {
	case err := <-woke:
		t.Fatalf("WaitFor returned before any append: %v", err)
	default:
	}
	_, err := l.Append(ctx, []Record{{Data: []byte("a")}})
	require.NoError(t, err)
	require.NoError(t, <-woke)
	require.NoError(t, l.WaitFor(ctx, 0)) // already satisfied

	// Several waiters, woken by one publish.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- l.WaitFor(ctx, 2) }()
	}
	_, err = l.Append(ctx, []Record{{Data: []byte("b")}, {Data: []byte("c")}})
	require.NoError(t, err)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// Returns on ctx cancel.
	cctx, cancel := context.WithCancel(ctx)
	go func() { woke <- l.WaitFor(cctx, 100) }()
	cancel()
	require.ErrorIs(t, <-woke, context.Canceled)

	// Returns on close.
	go func() { woke <- l.WaitFor(ctx, 100) }()
	require.NoError(t, l.Close())
	require.ErrorIs(t, <-woke, ErrClosed)
}

func TestRetention(t *testing.T) {
	var mu sync.Mutex
	now := time.UnixMilli(1_000_000_000)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 1000, IndexIntervalBytes: 100, Now: clock, Logger: quietLogger()}
	l, err := Open(opts)
	require.NoError(t, err)

	// 10 segments of 10 records each, one second apart per segment.
	var m model
	for seg := range 10 {
		for range 10 {
			ts := now.UnixMilli() + int64(seg)*1000
			m.appendBatch(t, l, []int{40}, []int64{ts})
		}
	}
	segs := segmentLogs(t, dir)
	require.Greater(t, len(segs), 5)
	bases := make([]int64, len(segs))
	for i, p := range segs {
		base, _, ok := parseSegmentFileName(filepath.Base(p))
		require.True(t, ok)
		bases[i] = base
	}

	// Nothing is old enough yet.
	n, err := l.EnforceRetention(time.Hour, 0)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	// Advance the clock: records with ts < now-maxAge are expired. Only whole
	// segments whose every record is expired go.
	mu.Lock()
	now = now.Add(10 * time.Second)
	mu.Unlock()
	cutoffTs := now.Add(-7500 * time.Millisecond).UnixMilli()
	wantDeleted := 0
	for i := 0; i < len(bases)-1; i++ {
		maxTs := m.entries[bases[i+1]-1].Timestamp
		if maxTs >= cutoffTs {
			break
		}
		wantDeleted++
	}
	require.Greater(t, wantDeleted, 0)
	n, err = l.EnforceRetention(7500*time.Millisecond, 0)
	require.NoError(t, err)
	require.Equal(t, wantDeleted, n)
	require.Equal(t, bases[n], l.StartOffset())
	require.Len(t, segmentLogs(t, dir), len(segs)-n)
	_, err = l.Read(0, 100)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
	_, err = l.Read(bases[n]-1, 100)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
	checkLog(t, l, &m, bases[n])

	// Size-based: shrink to at most ~3 segments' worth; never the active one.
	limit := l.Size() / 2
	n2, err := l.EnforceRetention(0, limit)
	require.NoError(t, err)
	require.Greater(t, n2, 0)
	require.LessOrEqual(t, l.Size(), limit)
	n3, err := l.EnforceRetention(0, 1)
	require.NoError(t, err)
	require.Len(t, segmentLogs(t, dir), 1, "deleted %d more", n3)
	start := l.StartOffset()
	checkLog(t, l, &m, start)

	// Very old maxAge with an active segment only: nothing to delete.
	mu.Lock()
	now = now.Add(100 * time.Hour)
	mu.Unlock()
	n, err = l.EnforceRetention(time.Millisecond, 1)
	require.NoError(t, err)
	require.Equal(t, 0, n)

	// The start offset survives a reopen.
	require.NoError(t, l.Close())
	l, err = Open(opts)
	require.NoError(t, err)
	defer l.Close()
	checkLog(t, l, &m, start)
}

func TestRetentionWhileReading(t *testing.T) {
	l := openTest(t, Options{SegmentBytes: 500})
	var m model
	for range 50 {
		m.appendBatch(t, l, []int{50}, []int64{1})
	}
	// Hold a reference to the first segment as a reader would, delete it,
	// and read it through the held reference.
	s, v, err := l.acquire(0)
	require.NoError(t, err)
	n, err := l.EnforceRetention(0, 1)
	require.NoError(t, err)
	require.Greater(t, n, 0)
	bp := getScanBuf()
	es, _, _, err := l.readSegment(s, v, 0, 1<<20, nil, 0, bp)
	s.unref()
	require.NoError(t, err)
	requireEntries(t, m.entries[:len(es)], es)
	_, err = l.Read(0, 10)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
}

func TestAsyncFlusher(t *testing.T) {
	l := openTest(t, Options{Durability: DurabilityAsync, FlushInterval: time.Millisecond})
	flushed := make(chan struct{}, 1)
	l.hooks = &testHooks{beforeSync: func(*os.File) error {
		select {
		case flushed <- struct{}{}:
		default:
		}
		return nil
	}}
	_, err := l.Append(context.Background(), []Record{{Data: []byte("x")}})
	require.NoError(t, err)
	require.Equal(t, int64(1), l.NextOffset()) // visible once written
	select {
	case <-flushed: // the background flusher fsynced on its own
	case <-time.After(10 * time.Second):
		t.Fatal("flusher never fsynced")
	}
	require.NoError(t, l.Close())
}
