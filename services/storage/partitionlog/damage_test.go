package partitionlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// readSkippingLost reads every entry of l from 0, skipping the ranges
// reported lost, and returns the entries and the lost ranges.
func readSkippingLost(t testing.TB, l *Log, maxBytes int) ([]Entry, [][2]int64) {
	t.Helper()
	var out []Entry
	var lost [][2]int64
	for from := l.StartOffset(); from < l.NextOffset(); {
		es, err := l.Read(from, maxBytes)
		var le *LostRangeError
		if errors.As(err, &le) {
			require.Equal(t, from, le.From)
			require.GreaterOrEqual(t, le.To, le.From)
			if n := len(lost); n > 0 && lost[n-1][1]+1 == le.From {
				lost[n-1][1] = le.To // one range reported in parts by reads that started inside it
			} else {
				lost = append(lost, [2]int64{le.From, le.To})
			}
			from = le.To + 1
			continue
		}
		require.NoError(t, err)
		require.NotEmpty(t, es)
		out = append(out, es...)
		from = es[len(es)-1].Offset + 1
	}
	return out, lost
}

// damageOutcome is what a damaged log must look like once opened: the lost
// offset ranges, and the next offset.
type damageOutcome struct {
	lost [][2]int64
	next int64
}

// expectLost returns the outcome of damaging bytes [lo, hi) of a segment
// whose batches are bounds: every batch touching the range is lost (as one
// range), unless they are the last ones of the last segment, which recovery
// cuts off as a torn tail.
func expectLost(bounds []batchBound, base, lo, hi, next int64, last bool) damageOutcome {
	first, end := -1, -1
	for i, b := range bounds {
		if b.end > lo && b.pos < hi {
			if first < 0 {
				first = i
			}
			end = i
		}
	}
	if first < 0 {
		return damageOutcome{next: next}
	}
	from := base
	if first > 0 {
		from = bounds[first-1].next
	}
	if last && end == len(bounds)-1 {
		return damageOutcome{next: from}
	}
	return damageOutcome{lost: [][2]int64{{from, bounds[end].next - 1}}, next: next}
}

// checkDamaged opens the log in dir and checks that exactly the intact
// entries of m are readable, the outcome's ranges reported lost, and that
// appends go on at the next offset.
func checkDamaged(t *testing.T, opts Options, dir string, m *model, want damageOutcome) *Log {
	t.Helper()
	opts.Dir = dir
	l, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() { l.Close() })
	require.Equal(t, want.next, l.NextOffset())
	var intact []Entry
	for _, e := range m.entries[:want.next] {
		if !slices.ContainsFunc(want.lost, func(r [2]int64) bool { return e.Offset >= r[0] && e.Offset <= r[1] }) {
			intact = append(intact, e)
		}
	}
	for _, budget := range []int{1 << 20, 0, 97} {
		got, lost := readSkippingLost(t, l, budget)
		requireEntries(t, intact, got)
		require.Equal(t, want.lost, lost)
	}
	// Reads that start inside a lost range are told where it ends.
	for _, r := range want.lost {
		_, err := l.Read((r[0]+r[1])/2, 100)
		var le *LostRangeError
		require.ErrorAs(t, err, &le)
		require.Equal(t, [2]int64{(r[0] + r[1]) / 2, r[1]}, [2]int64{le.From, le.To})
		_, err = l.ReadBatches(r[0], 100)
		require.ErrorIs(t, err, ErrLost)
	}
	off, err := l.Append(context.Background(), []Record{{Timestamp: 5, Data: []byte("after damage")}})
	require.NoError(t, err)
	require.Equal(t, want.next, off)
	return l
}

// quarantined returns the quarantine files of dir with their sizes.
func quarantined(t *testing.T, dir string) map[string]int64 {
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]int64{}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".quarantine") {
			fi, err := e.Info()
			require.NoError(t, err)
			out[e.Name()] = fi.Size()
		}
	}
	return out
}

// TestDamagedFiles is the table of damage done to a log's files and what
// must happen: intact batches before and after the damage stay readable,
// the damaged offsets are reported lost (never silently skipped, never
// failing the reads after them), the damaged bytes are kept in a
// quarantine file, and only a torn tail of the last segment is cut off.
func TestDamagedFiles(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildDamageLog(t, dir, 3)
	segs := segmentLogs(t, dir)
	last, lastBase := lastSegment(t, dir)
	lastBounds := batchBounds(t, last, lastBase)
	first := segs[0]
	firstBounds := batchBounds(t, first, 0)
	require.Greater(t, len(firstBounds), 6)
	require.Greater(t, len(lastBounds), 4)
	mid := firstBounds[len(firstBounds)/2]
	lmid := lastBounds[len(lastBounds)/2]
	next := m.next()

	type damage struct {
		name   string
		file   string                       // which segment's log
		damage func(data []byte) []byte     // returns the new file contents
		want   func() damageOutcome         // computed from the batch bounds
		check  func(t *testing.T, d string) // extra checks
	}
	flip := func(p int64) func([]byte) []byte {
		return func(b []byte) []byte { b[p] ^= 0x10; return b }
	}
	cases := []damage{
		{name: "flip in the middle of the last segment", file: last, damage: flip(lmid.pos + batchHeaderSize + 1),
			want: func() damageOutcome {
				return expectLost(lastBounds, lastBase, lmid.pos+batchHeaderSize+1, lmid.pos+batchHeaderSize+2, next, true)
			}},
		{name: "flip in the length field in the middle of the last segment", file: last, damage: flip(lmid.pos + offLength + 3),
			want: func() damageOutcome { return expectLost(lastBounds, lastBase, lmid.pos, lmid.pos+1, next, true) }},
		{name: "flip in the last batch (a torn tail)", file: last, damage: flip(lastBounds[len(lastBounds)-1].end - 1),
			want: func() damageOutcome {
				return damageOutcome{next: lastBounds[len(lastBounds)-2].next}
			}},
		{name: "last segment cut inside its last batch (a torn tail)", file: last,
			damage: func(b []byte) []byte { return b[:lastBounds[len(lastBounds)-1].end-3] },
			want:   func() damageOutcome { return damageOutcome{next: lastBounds[len(lastBounds)-2].next} }},
		{name: "flip in a sealed segment", file: first, damage: flip(mid.pos + batchHeaderSize),
			want: func() damageOutcome { return expectLost(firstBounds, 0, mid.pos, mid.pos+1, next, false) }},
		{name: "flip in the first batch of a sealed segment", file: first, damage: flip(offCRC),
			want: func() damageOutcome { return expectLost(firstBounds, 0, 0, 1, next, false) }},
		{name: "flip in the last batch of a sealed segment", file: first, damage: flip(firstBounds[len(firstBounds)-1].end - 1),
			want: func() damageOutcome {
				b := firstBounds[len(firstBounds)-1]
				return expectLost(firstBounds, 0, b.end-1, b.end, next, false)
			}},
		{name: "sealed segment cut short at a batch boundary", file: first,
			damage: func(b []byte) []byte { return b[:firstBounds[len(firstBounds)-3].end] },
			want: func() damageOutcome {
				return damageOutcome{lost: [][2]int64{{firstBounds[len(firstBounds)-3].next, firstBounds[len(firstBounds)-1].next - 1}}, next: next}
			}},
		{name: "zero a page of a sealed segment", file: first,
			damage: func(b []byte) []byte {
				lo, hi := firstBounds[1].pos+5, min(firstBounds[1].pos+5+512, firstBounds[len(firstBounds)-2].pos)
				clear(b[lo:hi])
				return b
			},
			want: func() damageOutcome {
				lo, hi := firstBounds[1].pos+5, min(firstBounds[1].pos+5+512, firstBounds[len(firstBounds)-2].pos)
				return expectLost(firstBounds, 0, lo, hi, next, false)
			}},
		{name: "zero a page in the middle of the last segment", file: last,
			damage: func(b []byte) []byte {
				clear(b[lastBounds[1].pos+3 : lastBounds[3].pos+13])
				return b
			},
			want: func() damageOutcome {
				return expectLost(lastBounds, lastBase, lastBounds[1].pos+3, lastBounds[3].pos+13, next, true)
			}},
		{name: "swap two batches of a sealed segment", file: first,
			damage: func(b []byte) []byte {
				x, y := firstBounds[2], firstBounds[3]
				out := slices.Clone(b[:x.pos])
				out = append(out, b[y.pos:y.end]...)
				out = append(out, b[x.pos:x.end]...)
				return append(out, b[y.end:]...)
			},
			// Both are intact but out of order: their offsets are lost (their
			// bytes kept), everything around them stays readable.
			want: func() damageOutcome {
				return expectLost(firstBounds, 0, firstBounds[2].pos, firstBounds[3].end, next, false)
			}},
		{name: "garbage offset index entries of a sealed segment", file: strings.TrimSuffix(first, logExt) + indexExt,
			damage: func(b []byte) []byte {
				for i := idxEntrySize; i < len(b)-idxEntrySize; i++ {
					b[i] ^= 0x5a
				}
				return b
			},
			want: func() damageOutcome { return damageOutcome{next: next} }},
		{name: "garbage time index entries of a sealed segment", file: strings.TrimSuffix(first, logExt) + timeIndexExt,
			damage: func(b []byte) []byte {
				for i := 0; i < len(b)-tidxEntrySize; i++ {
					b[i] ^= 0x5a
				}
				return b
			},
			want: func() damageOutcome { return damageOutcome{next: next} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			path := filepath.Join(d, filepath.Base(tc.file))
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			orig := slices.Clone(data)
			require.NoError(t, os.WriteFile(path, tc.damage(data), 0o644))
			want := tc.want()
			l := checkDamaged(t, opts, d, m, want)
			if strings.HasSuffix(tc.file, logExt) && tc.file != last || len(want.lost) > 0 {
				// Scrubbing (or the repair a reader started) quarantines the
				// damage of sealed segments; the result reads the same.
				_, err := l.Scrub(context.Background(), 0)
				require.NoError(t, err)
				got, lost := readSkippingLost(t, l, 1<<20)
				require.Equal(t, want.lost, lost)
				require.Len(t, got, int(l.NextOffset())-lostCount(want.lost))
			}
			if (len(want.lost) > 0 || want.next < next) && !strings.Contains(tc.name, "cut short at a batch boundary") {
				q := quarantined(t, d)
				require.NotEmpty(t, q, "the damaged bytes must be kept")
				var kept int64
				for _, n := range q {
					kept += n
				}
				require.Positive(t, kept)
			}
			if strings.HasSuffix(tc.file, "index") {
				// Scrubbing rebuilt the index as it should be.
				_, err := l.Scrub(context.Background(), 0)
				require.NoError(t, err)
				got, err := os.ReadFile(path)
				require.NoError(t, err)
				require.Equal(t, orig, got)
			}
			require.NoError(t, l.Close())
			// Reopened, the log reads the same (the repair is durable) and
			// the next offset is where appends went on.
			want.next++
			m2 := &model{entries: append(slices.Clone(m.entries[:want.next-1]), Entry{Offset: want.next - 1, Timestamp: 5, Data: []byte("after damage")})}
			checkDamaged(t, opts, d, m2, want).Close()
		})
	}
}

// buildDamageLog is buildLog with a few more small batches, so that the
// last segment has a middle.
func buildDamageLog(t *testing.T, dir string, seed uint64) (Options, *model) {
	opts, m := buildLog(t, dir, seed)
	l, err := Open(opts)
	require.NoError(t, err)
	for i := range 8 {
		m.appendBatch(t, l, []int{10, 3}, []int64{int64(2_000_000_000_000 + i), int64(2_000_000_000_000 + i)})
	}
	require.NoError(t, l.Close())
	return opts, m
}

func lostCount(rs [][2]int64) int {
	n := 0
	for _, r := range rs {
		n += int(r[1] - r[0] + 1)
	}
	return n
}

// TestRandomDamageKeepsIntactBatches damages random byte ranges of random
// segments and checks that every batch outside the damage stays readable.
func TestRandomDamageKeepsIntactBatches(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildDamageLog(t, dir, 11)
	segs := segmentLogs(t, dir)
	rng := rand.New(rand.NewPCG(12, 13))
	for i := range 30 {
		si := rng.IntN(len(segs))
		path := segs[si]
		base, _, _ := parseSegmentFileName(filepath.Base(path))
		bounds := batchBounds(t, path, base)
		size := bounds[len(bounds)-1].end
		lo := rng.Int64N(size)
		hi := min(size, lo+1+rng.Int64N(200))
		d := copyDir(t, dir)
		p := filepath.Join(d, filepath.Base(path))
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		for j := lo; j < hi; j++ {
			data[j] = byte(rng.Uint32())
		}
		require.NoError(t, os.WriteFile(p, data, 0o644))
		want := expectLost(bounds, base, lo, hi, m.next(), si == len(segs)-1)
		t.Logf("case %d: segment %d bytes [%d, %d): %+v", i, si, lo, hi, want)
		checkDamaged(t, opts, d, m, want).Close()
		os.RemoveAll(d)
	}
}

// TestReaderRepairsSealedSegment: damage a reader meets in a sealed segment
// is repaired in the background; the log keeps serving meanwhile.
func TestReaderRepairsSealedSegment(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildLog(t, dir, 5)
	first := segmentLogs(t, dir)[0]
	bounds := batchBounds(t, first, 0)
	data, err := os.ReadFile(first)
	require.NoError(t, err)
	data[bounds[2].pos+batchHeaderSize] ^= 1
	require.NoError(t, os.WriteFile(first, data, 0o644))
	want := expectLost(bounds, 0, bounds[2].pos, bounds[2].pos+1, m.next(), false)
	l := checkDamaged(t, opts, dir, m, want)
	require.Eventually(t, func() bool { return len(quarantined(t, dir)) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool { return l.Damage().Ranges == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, want.lost[0][1]-want.lost[0][0]+1, l.Damage().Offsets)
}

// TestCheck: the offline check finds each kind of damage without changing
// anything, and finds nothing to do once the log repaired itself.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildDamageLog(t, dir, 21)
	l, err := Open(opts)
	require.NoError(t, err)
	require.NoError(t, l.AssignEpoch(3, m.next()))
	require.NoError(t, l.Close())
	rep, err := Check(dir, nil)
	require.NoError(t, err)
	require.Zero(t, rep.Problems(), "%+v", rep)
	require.Equal(t, len(segmentLogs(t, dir)), rep.Segments)

	first := segmentLogs(t, dir)[0]
	bounds := batchBounds(t, first, 0)
	data, err := os.ReadFile(first)
	require.NoError(t, err)
	data[bounds[3].pos+batchHeaderSize] ^= 4
	require.NoError(t, os.WriteFile(first, data, 0o644))
	idx := strings.TrimSuffix(segmentLogs(t, dir)[1], logExt) + indexExt
	ib, err := os.ReadFile(idx)
	require.NoError(t, err)
	require.NotEmpty(t, ib)
	ib[len(ib)-1] ^= 0x40
	require.NoError(t, os.WriteFile(idx, ib, 0o644))
	ep, err := os.ReadFile(filepath.Join(dir, epochFileName))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, epochFileName), append([]byte("x"), ep...), 0o644))

	before := map[string][]byte{}
	for _, p := range []string{first, idx} {
		before[p], _ = os.ReadFile(p)
	}
	rep, err = Check(dir, nil)
	require.NoError(t, err)
	require.Equal(t, 3, rep.Problems(), "%+v", rep)
	require.Len(t, rep.Damage, 1)
	want := expectLost(bounds, 0, bounds[3].pos, bounds[3].pos+1, m.next(), false)
	require.Equal(t, want.lost[0], [2]int64{rep.Damage[0].From, rep.Damage[0].To})
	require.Equal(t, bounds[3].pos, rep.Damage[0].Position)
	require.Len(t, rep.Indexes, 1)
	require.Len(t, rep.Files, 1)
	for p, b := range before {
		after, _ := os.ReadFile(p)
		require.Equal(t, b, after, "check changed %s", p)
	}
	require.Empty(t, quarantined(t, dir))

	// The log repairs what it can (the epochs file it refuses to guess).
	require.NoError(t, os.WriteFile(filepath.Join(dir, epochFileName), ep, 0o644))
	l, err = Open(opts)
	require.NoError(t, err)
	_, err = l.Scrub(context.Background(), 0)
	require.NoError(t, err)
	require.NoError(t, l.Close())
	rep, err = Check(dir, nil)
	require.NoError(t, err)
	require.Zero(t, rep.Problems(), "%+v", rep)
	require.Len(t, rep.Lost, 1)
}

// FuzzIndexReader gives a sealed segment arbitrary offset and time index
// files: whatever they hold, reads return exactly the segment's records (a
// wrong index is read around, never believed).
func FuzzIndexReader(f *testing.F) {
	seg := encodeTestSegment([]string{"a", "bb", ""}, []string{"hello"}, []string{string(make([]byte, 300)), "x"}, []string{"last"})
	want, _ := referenceDecode(seg, nil)
	var idx, tidx []byte
	idx = putIdxEntry(idx, 3, uint32(len(encodeTestSegment([]string{"a", "bb", ""}))))
	tidx = putTidxEntry(tidx, 0, 3)
	tidx = putTidxEntry(tidx, 3000, uint32(want.next()))
	f.Add(idx, tidx)
	f.Add([]byte{}, []byte{})
	f.Add(bytes.Repeat([]byte{0xff}, 16), bytes.Repeat([]byte{0xff}, 24))
	f.Add(putIdxEntry(nil, 1, 7), tidx)
	f.Fuzz(func(t *testing.T, idx, tidx []byte) {
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(0, logExt)), seg, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(0, indexExt)), idx, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(0, timeIndexExt)), tidx, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(want.next(), logExt)), nil, 0o644))
		l, err := Open(Options{Dir: dir, Logger: quietLogger(), IndexIntervalBytes: 16})
		require.NoError(t, err)
		defer l.Close()
		for from := int64(0); from < want.next(); from++ {
			es, err := l.Read(from, 1<<20)
			require.NoError(t, err)
			require.Equal(t, want.recs[from:], toRef(es))
		}
	})
}

// A follower records a range its leader lost with AppendLostAt: readers
// report exactly that range lost and read on past it, also after a reopen
// (plaintext and encrypted logs), and OnLost hears of it when read.
func TestAppendLostAt(t *testing.T) {
	for _, encrypted := range []bool{false, true} {
		t.Run(fmt.Sprint("encrypted=", encrypted), func(t *testing.T) {
			var lostSeen [][2]int64
			opts := Options{Dir: t.TempDir(), Logger: quietLogger(), OnLost: func(from, to int64) { lostSeen = append(lostSeen, [2]int64{from, to}) }}
			if encrypted {
				opts.Keys = mustKeyring(t, testKey(1, 1))
			}
			l := openTest(t, opts)
			ctx := context.Background()
			_, err := l.Append(ctx, []Record{{Data: []byte("a"), Timestamp: 1}, {Data: []byte("b"), Timestamp: 1}})
			require.NoError(t, err)
			require.ErrorIs(t, l.AppendLostAt(ctx, 3, 5, "x"), ErrOffsetMismatch)
			require.ErrorIs(t, l.AppendLostAt(ctx, 2, 0, "x"), ErrInvalidBatch)
			require.NoError(t, l.AppendLostAt(ctx, 2, 5, "the leader lost offsets 2 to 6"))
			_, err = l.Append(ctx, []Record{{Data: []byte("c"), Timestamp: 2}})
			require.NoError(t, err)
			require.EqualValues(t, 8, l.NextOffset())
			check := func(l *Log) {
				_, err := l.Read(2, 1<<20)
				var lost *LostRangeError
				require.ErrorAs(t, err, &lost)
				require.Equal(t, [2]int64{2, 6}, [2]int64{lost.From, lost.To})
				got, err := l.Read(7, 1<<20)
				require.NoError(t, err)
				require.Len(t, got, 1)
				require.Equal(t, "c", string(got[0].Data))
				bs, err := l.ReadBatches(0, 1<<20)
				require.NoError(t, err)
				require.Len(t, bs, 1, "batches stop before the lost range")
			}
			check(l)
			require.NotEmpty(t, lostSeen)
			require.NoError(t, l.Close())
			check(openTest(t, opts))
		})
	}
}
