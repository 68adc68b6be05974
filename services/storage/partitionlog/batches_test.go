package partitionlog

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recordsBatch encodes recs as a FormatRecords Batch, as Append would.
func recordsBatch(recs []Record) Batch {
	buf := make([]byte, encodedBatchSize(recs))
	maxTs := encodeBatch(buf, recs)
	return Batch{Format: FormatRecords, Count: len(recs), FirstTimestamp: recs[0].Timestamp, MaxTimestamp: maxTs, Payload: buf[batchHeaderSize:]}
}

// bmodel is the expected content of a log written batch by batch.
type bmodel struct {
	start   int64
	batches []BatchView
}

func (m *bmodel) next() int64 {
	if len(m.batches) == 0 {
		return m.start
	}
	return m.batches[len(m.batches)-1].LastOffset() + 1
}

// add records b appended at base.
func (m *bmodel) add(t testing.TB, base int64, b Batch) {
	t.Helper()
	require.Equal(t, m.next(), base)
	m.batches = append(m.batches, BatchView{BaseOffset: base, Count: b.Count, Format: b.Format,
		FirstTimestamp: b.FirstTimestamp, MaxTimestamp: b.MaxTimestamp, Payload: bytes.Clone(b.Payload)})
}

// truncate cuts the model like TruncateTo(o) for o >= start.
func (m *bmodel) truncate(o int64) int64 {
	for len(m.batches) > 0 && m.batches[len(m.batches)-1].BaseOffset+int64(m.batches[len(m.batches)-1].Count) > o {
		m.batches = m.batches[:len(m.batches)-1]
	}
	return m.next()
}

// genBatch makes a random batch: FormatRecords with probability 1/2, else an
// opaque one of format 1..255 (timestamps possibly out of order).
func genBatch(rng *rand.Rand, ts int64) Batch {
	n := 1 + rng.IntN(4)
	if rng.IntN(2) == 0 {
		recs := make([]Record, n)
		for i := range recs {
			d := make([]byte, rng.IntN(90))
			for j := range d {
				d[j] = byte(rng.Uint32())
			}
			recs[i] = Record{Timestamp: ts + rng.Int64N(40) - 20, Data: d}
		}
		return recordsBatch(recs)
	}
	p := make([]byte, rng.IntN(200))
	for j := range p {
		p[j] = byte(rng.Uint32())
	}
	return Batch{Format: Format(1 + rng.IntN(255)), Count: n, FirstTimestamp: ts + rng.Int64N(40) - 20, MaxTimestamp: ts + rng.Int64N(40) - 20, Payload: p}
}

// fill appends n random batches (through AppendBatch, or Append for some
// FormatRecords ones) and returns the last timestamp used.
func (m *bmodel) fill(t testing.TB, l *Log, rng *rand.Rand, n int, ts int64) int64 {
	t.Helper()
	for range n {
		ts += 5
		b := genBatch(rng, ts)
		var base int64
		var err error
		if b.Format == FormatRecords && rng.IntN(2) == 0 {
			var recs []Record
			require.NoError(t, ForEachRecord(BatchView{Count: b.Count, FirstTimestamp: b.FirstTimestamp, MaxTimestamp: b.MaxTimestamp, Payload: b.Payload},
				func(_, ts int64, d []byte) bool { recs = append(recs, Record{Timestamp: ts, Data: d}); return true }))
			base, err = l.Append(t.Context(), recs)
		} else {
			base, err = l.AppendBatch(t.Context(), b)
		}
		require.NoError(t, err)
		m.add(t, base, b)
	}
	return ts
}

func requireBatches(t testing.TB, want, got []BatchView) {
	t.Helper()
	require.Equal(t, len(want), len(got), "batch count")
	for i := range want {
		w, g := want[i], got[i]
		if w.BaseOffset != g.BaseOffset || w.Count != g.Count || w.Format != g.Format || w.FirstTimestamp != g.FirstTimestamp ||
			w.MaxTimestamp != g.MaxTimestamp || !bytes.Equal(w.Payload, g.Payload) {
			t.Fatalf("batch %d: want {base %d count %d format %d ts %d..%d len %d}, got {base %d count %d format %d ts %d..%d len %d}",
				i, w.BaseOffset, w.Count, w.Format, w.FirstTimestamp, w.MaxTimestamp, len(w.Payload),
				g.BaseOffset, g.Count, g.Format, g.FirstTimestamp, g.MaxTimestamp, len(g.Payload))
		}
	}
}

// readAllBatches reads every visible batch from `from` with the given budget.
func readAllBatches(t testing.TB, l *Log, from int64, maxBytes int) []BatchView {
	t.Helper()
	var out []BatchView
	for from < l.NextOffset() {
		bs, err := l.ReadBatches(from, maxBytes)
		require.NoError(t, err)
		require.NotEmpty(t, bs, "ReadBatches at %d below next offset %d returned nothing", from, l.NextOffset())
		out = append(out, bs...)
		from = bs[len(bs)-1].LastOffset() + 1
	}
	return out
}

// recordEntries returns the records of the FormatRecords batches of bs.
func recordEntries(t testing.TB, bs []BatchView) []Entry {
	t.Helper()
	var out []Entry
	for _, b := range bs {
		if b.Format != FormatRecords {
			continue
		}
		require.NoError(t, ForEachRecord(b, func(off, ts int64, d []byte) bool {
			out = append(out, Entry{Offset: off, Timestamp: ts, Data: d})
			return true
		}))
	}
	return out
}

// refOffsetForTime is OffsetForTime over batches, an opaque batch counting as
// one record with its MaxTimestamp at its base offset.
func refOffsetForTime(t testing.TB, m *bmodel, ts int64) int64 {
	for _, b := range m.batches {
		if b.Format != FormatRecords {
			if b.MaxTimestamp >= ts {
				return b.BaseOffset
			}
			continue
		}
		for _, e := range recordEntries(t, []BatchView{b}) {
			if e.Timestamp >= ts {
				return e.Offset
			}
		}
	}
	return m.next()
}

// checkBatchLog verifies l against m through ReadBatches, Read and
// OffsetForTime.
func checkBatchLog(t *testing.T, l *Log, m *bmodel) {
	t.Helper()
	require.Equal(t, m.start, l.StartOffset())
	require.Equal(t, m.next(), l.NextOffset())
	requireBatches(t, m.batches, readAllBatches(t, l, m.start, 1<<20))
	requireBatches(t, m.batches, readAllBatches(t, l, m.start, 0))
	requireBatches(t, m.batches, readAllBatches(t, l, m.start, 150))

	for bi, b := range m.batches {
		// Starting anywhere inside a batch returns that batch first, and a
		// budget is respected once more than one batch is returned.
		for _, from := range []int64{b.BaseOffset, b.LastOffset(), b.BaseOffset + int64(b.Count)/2} {
			bs, err := l.ReadBatches(from, 300)
			require.NoError(t, err)
			require.NotEmpty(t, bs)
			requireBatches(t, m.batches[bi:bi+len(bs)], bs)
			if len(bs) > 1 {
				used := 0
				for _, v := range bs {
					used += max(len(v.Payload), 1)
				}
				require.LessOrEqual(t, used, 300)
			}
		}
		// Read decodes records batches and stops at an opaque one.
		es, err := l.Read(b.BaseOffset, 1<<20)
		if b.Format != FormatRecords {
			require.ErrorIs(t, err, ErrOpaqueBatch)
			require.Contains(t, err.Error(), fmt.Sprintf("offsets %d to %d", b.BaseOffset, b.LastOffset()))
			require.Empty(t, es)
			continue
		}
		require.NoError(t, err)
		end := bi
		for end < len(m.batches) && m.batches[end].Format == FormatRecords {
			end++
		}
		requireEntries(t, recordEntries(t, m.batches[bi:end]), es)
	}
	bs, err := l.ReadBatches(m.next(), 100)
	require.NoError(t, err)
	require.Empty(t, bs)

	probes := []int64{math.MinInt64, math.MaxInt64}
	for _, b := range m.batches {
		probes = append(probes, b.FirstTimestamp-1, b.MaxTimestamp, b.MaxTimestamp+1)
	}
	for _, ts := range probes {
		got, err := l.OffsetForTime(ts)
		require.NoError(t, err)
		require.Equal(t, refOffsetForTime(t, m, ts), got, "OffsetForTime(%d)", ts)
	}
}

// TestBatchRoundTrip writes records and opaque batches of many formats, plain
// and encrypted, sync and async, across many segments, and reads them back
// before and after a reopen.
func TestBatchRoundTrip(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
			t.Run(fmt.Sprintf("encrypted=%v/%s", enc, d), func(t *testing.T) {
				dir := t.TempDir()
				opts := Options{Dir: dir, SegmentBytes: 1500, IndexIntervalBytes: 100, Durability: d, Logger: quietLogger()}
				if enc {
					opts.Keys = mustKeyring(t, testKey(1, 1))
				}
				l, err := Open(opts)
				require.NoError(t, err)
				rng := rand.New(rand.NewPCG(3, uint64(len(d.String()))))
				var m bmodel
				ts := m.fill(t, l, rng, 80, 1_700_000_000_000)
				require.Greater(t, len(segmentLogs(t, dir)), 4)
				checkBatchLog(t, l, &m)
				require.NoError(t, l.Close())

				formats := map[Format]bool{}
				for _, b := range diskBatches(t, dir) {
					formats[Format(b.flags>>8)] = true
					require.Equal(t, enc, b.flags&flagEncrypted != 0)
				}
				require.True(t, formats[FormatRecords])
				require.Greater(t, len(formats), 5)

				l, err = Open(opts)
				require.NoError(t, err)
				defer l.Close()
				checkBatchLog(t, l, &m)
				m.fill(t, l, rng, 10, ts)
				checkBatchLog(t, l, &m)
			})
		}
	}
}

// TestLegacyFlagsReadAsRecords: batches written before formats existed
// (flags 0 and 1) are FormatRecords batches; unknown flag bits outside the
// format byte are still refused.
func TestLegacyFlagsReadAsRecords(t *testing.T) {
	data := encodeTestSegment([]string{"a", "bb"}, []string{"c"})
	want, _ := referenceDecode(data, nil)
	require.Len(t, want.recs, 3)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(dir+"/"+segmentFileName(0, logExt), data, 0o644))
	l := openTest(t, Options{Dir: dir})
	bs, err := l.ReadBatches(0, 0)
	require.NoError(t, err)
	require.Len(t, bs, 1)
	require.Equal(t, FormatRecords, bs[0].Format)
	require.NoError(t, l.Close())

	for _, bad := range []uint16{1 << 2, 1 << 7, 1<<8 | 1<<3, flagLost | 1<<8, flagLost | flagEncrypted} {
		seg := bytes.Clone(data)
		putFlags(seg, 0, bad)
		sc := newScanner(bytes.NewReader(seg), "x.log", 0, int64(len(seg)), 0, nil)
		_, err := sc.next()
		require.ErrorIs(t, err, ErrCorrupt)
		require.Contains(t, err.Error(), "unsupported flags")
	}
}

// putFlags rewrites the flags of the batch at pos and fixes its CRC.
func putFlags(seg []byte, pos int, flags uint16) {
	b := seg[pos:]
	b[offFlags], b[offFlags+1] = byte(flags>>8), byte(flags)
	length := int(b[offLength])<<24 | int(b[offLength+1])<<16 | int(b[offLength+2])<<8 | int(b[offLength+3])
	putCRC(b[:batchLogOverhead+length])
}

func TestAppendBatchValidation(t *testing.T) {
	l := openTest(t, Options{MaxBatchBytes: 1000})
	good := recordsBatch([]Record{{Timestamp: 10, Data: []byte("x")}, {Timestamp: 30, Data: []byte("yy")}, {Timestamp: 20}})
	bad := func(f func(b *Batch)) Batch {
		b := good
		b.Payload = bytes.Clone(good.Payload)
		f(&b)
		return b
	}
	for name, b := range map[string]Batch{
		"count too high":      bad(func(b *Batch) { b.Count = 4 }),
		"count too low":       bad(func(b *Batch) { b.Count = 2 }),
		"count zero":          bad(func(b *Batch) { b.Count = 0 }),
		"max timestamp wrong": bad(func(b *Batch) { b.MaxTimestamp = 20 }),
		"first delta":         bad(func(b *Batch) { b.FirstTimestamp = 5 }),
		"trailing bytes":      bad(func(b *Batch) { b.Payload = append(b.Payload, 0) }),
		"truncated":           bad(func(b *Batch) { b.Payload = b.Payload[:len(b.Payload)-1] }),
		"empty":               bad(func(b *Batch) { b.Payload = nil }),
		"opaque count zero":   {Format: 1, Count: 0, Payload: []byte("k")},
		"opaque count huge":   {Format: 1, Count: math.MaxInt32 + 1, Payload: []byte("k")},
	} {
		_, err := l.AppendBatch(t.Context(), b)
		require.ErrorIs(t, err, ErrInvalidBatch, name)
		require.True(t, strings.HasPrefix(err.Error(), "partitionlog: "), err.Error())
		require.ErrorIs(t, l.AppendBatchAt(t.Context(), 0, b), ErrInvalidBatch, name)
	}
	_, err := l.AppendBatch(t.Context(), Batch{Format: 9, Count: 1, Payload: make([]byte, 1000-batchHeaderSize+1)})
	require.ErrorIs(t, err, ErrBatchTooLarge)
	require.Equal(t, int64(0), l.NextOffset(), "nothing stored")

	off, err := l.AppendBatch(t.Context(), good)
	require.NoError(t, err)
	require.Equal(t, int64(0), off)
	off, err = l.AppendBatch(t.Context(), Batch{Format: 9, Count: 1, Payload: make([]byte, 1000-batchHeaderSize)})
	require.NoError(t, err)
	require.Equal(t, int64(3), off)
	// An opaque batch with an empty payload and a max timestamp below its
	// first one is stored as given.
	off, err = l.AppendBatch(t.Context(), Batch{Format: 200, Count: 5, FirstTimestamp: 50, MaxTimestamp: 40})
	require.NoError(t, err)
	require.Equal(t, int64(4), off)
	bs, err := l.ReadBatches(4, 0)
	require.NoError(t, err)
	requireBatches(t, []BatchView{{BaseOffset: 4, Count: 5, Format: 200, FirstTimestamp: 50, MaxTimestamp: 40, Payload: []byte{}}}, bs)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = l.AppendBatch(ctx, good)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, int64(9), l.NextOffset())
}

func TestForEachRecord(t *testing.T) {
	b := recordsBatch([]Record{{Timestamp: 10, Data: []byte("x")}, {Timestamp: 8, Data: []byte("yy")}})
	v := BatchView{BaseOffset: 100, Count: b.Count, FirstTimestamp: b.FirstTimestamp, MaxTimestamp: b.MaxTimestamp, Payload: b.Payload}
	var got []Entry
	require.NoError(t, ForEachRecord(v, func(off, ts int64, d []byte) bool {
		got = append(got, Entry{off, ts, d})
		return true
	}))
	requireEntries(t, []Entry{{100, 10, []byte("x")}, {101, 8, []byte("yy")}}, got)
	n := 0
	require.NoError(t, ForEachRecord(v, func(int64, int64, []byte) bool { n++; return false }))
	require.Equal(t, 1, n)

	v.Format = 1
	require.ErrorIs(t, ForEachRecord(v, func(int64, int64, []byte) bool { t.Fatal("called"); return true }), ErrOpaqueBatch)
	v.Format, v.Count = FormatRecords, 3
	require.ErrorIs(t, ForEachRecord(v, func(int64, int64, []byte) bool { t.Fatal("called"); return true }), ErrInvalidBatch)
}

// TestOpaqueBatchesTimeAndRetention: the time index, OffsetForTime and
// age-based retention use an opaque batch's MaxTimestamp.
func TestOpaqueBatchesTimeAndRetention(t *testing.T) {
	var mu sync.Mutex
	now := int64(1_000_000)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return time.UnixMilli(now) }
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 600, IndexIntervalBytes: 50, Logger: quietLogger(), Now: clock}
	l, err := Open(opts)
	require.NoError(t, err)
	defer l.Close()
	var m bmodel
	for i := range 40 {
		// First timestamps go down while max timestamps go up: only the max
		// counts.
		b := Batch{Format: 1, Count: 1 + i%3, FirstTimestamp: 1000 - int64(i), MaxTimestamp: 1000 + 10*int64(i), Payload: bytes.Repeat([]byte{byte(i)}, 60)}
		off, err := l.AppendBatch(t.Context(), b)
		require.NoError(t, err)
		m.add(t, off, b)
	}
	require.Greater(t, len(segmentLogs(t, dir)), 4)
	checkBatchLog(t, l, &m)
	off, err := l.OffsetForTime(1000 + 10*17)
	require.NoError(t, err)
	require.Equal(t, m.batches[17].BaseOffset, off)

	// Everything with max timestamp < 1200 is expired: whole segments of it go.
	mu.Lock()
	now = 1200 + 100
	mu.Unlock()
	n, err := l.EnforceRetention(100*time.Millisecond, 0)
	require.NoError(t, err)
	require.Positive(t, n)
	start := l.StartOffset()
	for _, b := range m.batches {
		if b.BaseOffset < start {
			require.Less(t, b.MaxTimestamp, int64(1200), "batch %d deleted too early", b.BaseOffset)
		}
	}
	for len(m.batches) > 0 && m.batches[0].BaseOffset < start {
		m.batches = m.batches[1:]
	}
	m.start = start
	require.Less(t, m.batches[0].MaxTimestamp, int64(1200+10*3), "the oldest retained segment holds an expired batch, or retention stopped too early")
	checkBatchLog(t, l, &m)
}

// TestAppendBatchAt: a batch lands exactly at the requested base offset as
// the writer sees it, after everything queued before it; otherwise nothing
// is stored and the error says both offsets.
func TestAppendBatchAt(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		t.Run(d.String(), func(t *testing.T) {
			l := openTest(t, Options{Durability: d, SegmentBytes: 700})
			ctx := t.Context()
			opaque := func(n int, tag byte) Batch {
				return Batch{Format: 1, Count: n, FirstTimestamp: 1, MaxTimestamp: 2, Payload: bytes.Repeat([]byte{tag}, 100)}
			}
			require.NoError(t, l.AppendBatchAt(ctx, 0, opaque(3, 'a')))
			err := l.AppendBatchAt(ctx, 2, opaque(1, 'b'))
			require.ErrorIs(t, err, ErrOffsetMismatch)
			require.Contains(t, err.Error(), "base offset is 2, but the log's next offset is 3")
			require.ErrorIs(t, l.AppendBatchAt(ctx, 4, opaque(1, 'b')), ErrOffsetMismatch)
			require.ErrorIs(t, l.AppendBatchAt(ctx, -1, opaque(1, 'b')), ErrOffsetMismatch)
			require.Equal(t, int64(3), l.NextOffset())

			// Hold the writer inside the write of one append, queue appends
			// and AppendBatchAt calls behind it in a known order, and let it go.
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			l.hooks = &testHooks{writeAt: func(f *os.File, p []byte, off int64) (int, error) {
				once.Do(func() { close(entered); <-release })
				return f.WriteAt(p, off)
			}}
			type result struct {
				name string
				off  int64
				err  error
			}
			results := make(chan result, 32)
			queued := func() int { l.qmu.Lock(); defer l.qmu.Unlock(); return len(l.queue) }
			enqueue := func(name string, f func() (int64, error)) {
				before := queued()
				go func() { off, err := f(); results <- result{name, off, err} }()
				for queued() == before {
					// Wait until it is queued, so the queue order is known.
					time.Sleep(100 * time.Microsecond)
				}
			}
			go func() {
				off, err := l.Append(ctx, []Record{{Data: []byte("held")}})
				results <- result{"held", off, err}
			}()
			<-entered // offset 3 is being written
			for i := range 4 {
				enqueue(fmt.Sprintf("append%d", i), func() (int64, error) { return l.Append(ctx, []Record{{Data: []byte("q")}}) }) // 4..7
			}
			enqueue("at8", func() (int64, error) { return 8, l.AppendBatchAt(ctx, 8, opaque(2, 'c')) })      // 8..9
			enqueue("at8again", func() (int64, error) { return 8, l.AppendBatchAt(ctx, 8, opaque(1, 'd')) }) // mismatch
			enqueue("append", func() (int64, error) { return l.Append(ctx, []Record{{Data: []byte("r")}}) }) // 10
			enqueue("at11", func() (int64, error) { return 11, l.AppendBatchAt(ctx, 11, opaque(1, 'e')) })   // 11
			enqueue("at99", func() (int64, error) { return 99, l.AppendBatchAt(ctx, 99, opaque(1, 'f')) })   // mismatch
			close(release)
			got := map[string]result{}
			for range 10 {
				r := <-results
				got[r.name] = r
			}
			l.hooks = nil
			require.NoError(t, got["held"].err)
			require.Equal(t, int64(3), got["held"].off)
			for i := range 4 {
				require.NoError(t, got[fmt.Sprintf("append%d", i)].err)
			}
			require.NoError(t, got["at8"].err)
			require.ErrorIs(t, got["at8again"].err, ErrOffsetMismatch)
			require.Contains(t, got["at8again"].err.Error(), "next offset is 10")
			require.NoError(t, got["append"].err)
			require.Equal(t, int64(10), got["append"].off)
			require.NoError(t, got["at11"].err)
			require.ErrorIs(t, got["at99"].err, ErrOffsetMismatch)
			require.Equal(t, int64(12), l.NextOffset())
			bs := readAllBatches(t, l, 0, 1<<20)
			var tags []string
			for _, b := range bs {
				if b.Format == 1 {
					tags = append(tags, fmt.Sprintf("%d:%c", b.BaseOffset, b.Payload[0]))
				}
			}
			require.Equal(t, []string{"0:a", "8:c", "11:e"}, tags)
		})
	}
}

// TestReplicaRoundTrip copies a log batch by batch into replicas, as a
// follower does (ReadBatches on the leader, AppendBatchAt on the follower),
// from plaintext to encrypted and back, including a leader whose start
// offset is above 0 (the replica is Reset to it first).
func TestReplicaRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	leader := openTest(t, Options{SegmentBytes: 1200, IndexIntervalBytes: 64})
	var m bmodel
	m.fill(t, leader, rng, 120, 1_700_000_000_000)
	require.NoError(t, leader.AssignEpoch(3, 0))

	replicate := func(t *testing.T, from, to *Log, budget int) {
		next := to.NextOffset()
		for next < from.NextOffset() {
			bs, err := from.ReadBatches(next, budget)
			require.NoError(t, err)
			for _, b := range bs {
				if b.BaseOffset < next {
					continue
				}
				require.NoError(t, to.AppendBatchAt(t.Context(), b.BaseOffset, Batch{Format: b.Format, Count: b.Count,
					FirstTimestamp: b.FirstTimestamp, MaxTimestamp: b.MaxTimestamp, Payload: b.Payload}))
				next = b.LastOffset() + 1
			}
		}
	}
	enc := openTest(t, Options{SegmentBytes: 2000, IndexIntervalBytes: 100, Keys: mustKeyring(t, testKey(7, 7))})
	replicate(t, leader, enc, 500)
	checkBatchLog(t, enc, &m)
	plain := openTest(t, Options{SegmentBytes: 900, Durability: DurabilityAsync})
	replicate(t, enc, plain, 1)
	checkBatchLog(t, plain, &m)

	// A leader that retention trimmed: the follower starts at its start
	// offset.
	_, err := leader.TrimBefore(m.batches[60].BaseOffset)
	require.NoError(t, err)
	start := leader.StartOffset()
	require.Positive(t, start)
	for m.batches[0].BaseOffset < start {
		m.batches = m.batches[1:]
	}
	m.start = start
	late := openTest(t, Options{SegmentBytes: 1000, Keys: mustKeyring(t, testKey(1, 2))})
	require.NoError(t, late.Reset(t.Context(), start))
	replicate(t, leader, late, 3000)
	checkBatchLog(t, late, &m)
}

// TestOnPublish: the hook sees every change of NextOffset, in order, from a
// goroutine that may call the log's read methods.
func TestOnPublish(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		t.Run(d.String(), func(t *testing.T) {
			var mu sync.Mutex
			var seen []int64
			var l *Log
			var ready atomic.Bool
			opts := Options{Durability: d, SegmentBytes: 500, OnPublish: func(next int64) {
				if ready.Load() {
					// Re-entering the log's read side must not deadlock.
					_ = l.NextOffset()
					_, _ = l.ReadBatches(max(next-1, l.StartOffset()), 10)
				}
				mu.Lock()
				seen = append(seen, next)
				mu.Unlock()
			}}
			l = openTest(t, opts)
			ready.Store(true)
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 20 {
						_, err := l.Append(t.Context(), []Record{{Data: make([]byte, 10+w+i)}})
						require.NoError(t, err)
					}
				}()
			}
			wg.Wait()
			got := func() []int64 {
				mu.Lock()
				defer mu.Unlock()
				s := seen
				seen = nil
				return s
			}
			s := got()
			require.NotEmpty(t, s)
			require.True(t, isSorted(s), "%v", s)
			require.Equal(t, int64(80), s[len(s)-1], "called before the appends returned")

			next, err := l.TruncateTo(t.Context(), 30)
			require.NoError(t, err)
			require.Equal(t, int64(30), next)
			require.NoError(t, l.Reset(t.Context(), 1000))
			_, err = l.TruncateTo(t.Context(), 5000) // no-op: no call
			require.NoError(t, err)
			_, err = l.AppendBatch(t.Context(), Batch{Format: 2, Count: 3})
			require.NoError(t, err)
			require.Equal(t, []int64{30, 1000, 1003}, got())
		})
	}
}

func isSorted(s []int64) bool {
	for i := 1; i < len(s); i++ {
		if s[i] < s[i-1] {
			return false
		}
	}
	return true
}
