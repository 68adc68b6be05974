package partitionlog

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// buildLog writes a multi-segment log in dir, closes it and returns its model.
// The final batch has several records.
func buildLog(t *testing.T, dir string, seed uint64) (Options, *model) {
	t.Helper()
	opts := Options{Dir: dir, SegmentBytes: 1500, IndexIntervalBytes: 100, Logger: quietLogger()}
	l, err := Open(opts)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(seed, 1))
	var m model
	ts := int64(1_700_000_000_000)
	for range 70 {
		n := 1 + rng.IntN(3)
		sizes, tss := make([]int, n), make([]int64, n)
		for i := range n {
			sizes[i] = rng.IntN(60)
			ts += rng.Int64N(10)
			tss[i] = ts
		}
		m.appendBatch(t, l, sizes, tss)
	}
	m.appendBatch(t, l, []int{20, 5, 30}, []int64{ts + 1, ts + 2, ts + 3})
	require.NoError(t, l.Close())
	require.GreaterOrEqual(t, len(segmentLogs(t, dir)), 3)
	return opts, &m
}

func lastSegment(t *testing.T, dir string) (string, int64) {
	segs := segmentLogs(t, dir)
	p := segs[len(segs)-1]
	base, _, ok := parseSegmentFileName(filepath.Base(p))
	require.True(t, ok)
	return p, base
}

// checkRecovered opens the log in dir and checks that it holds exactly the
// first `next` entries of m, that the last segment was cut back to wantSize,
// and that appending continues at next.
func checkRecovered(t *testing.T, opts Options, dir string, m *model, next int64, lastPath string, wantSize int64) {
	t.Helper()
	opts.Dir = dir
	l, err := Open(opts)
	require.NoError(t, err)
	defer l.Close()
	require.Equal(t, next, l.NextOffset())
	requireEntries(t, m.entries[:next], readAll(t, l, 0, 1<<20))
	fi, err := os.Stat(filepath.Join(dir, filepath.Base(lastPath)))
	require.NoError(t, err)
	require.Equal(t, wantSize, fi.Size())
	for _, ts := range []int64{0, m.entries[next/2].Timestamp, 1 << 62} {
		got, err := l.OffsetForTime(ts)
		require.NoError(t, err)
		require.Equal(t, bruteOffsetForTime(m.entries[:next], 0, ts), got)
	}
	off, err := l.Append(context.Background(), []Record{{Timestamp: 5, Data: []byte("after recovery")}})
	require.NoError(t, err)
	require.Equal(t, next, off)
	es, err := l.Read(off, 100)
	require.NoError(t, err)
	require.Equal(t, "after recovery", string(es[0].Data))
}

// expectedPrefix returns the next offset and file size of the longest run of
// complete batches that fit in the first p bytes.
func expectedPrefix(bounds []batchBound, base, p int64) (next, size int64) {
	next = base
	for _, b := range bounds {
		if b.end > p {
			break
		}
		next, size = b.next, b.end
	}
	return next, size
}

func TestReopenAfterTruncation(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildLog(t, dir, 1)
	last, base := lastSegment(t, dir)
	bounds := batchBounds(t, last, base)
	require.NotEmpty(t, bounds)
	final := bounds[len(bounds)-1]

	positions := []int64{}
	for p := final.pos; p < final.end; p++ { // every byte of the final batch
		positions = append(positions, p)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	random := 30
	if testing.Short() {
		random = 10
	}
	for range random {
		positions = append(positions, rng.Int64N(final.end))
	}
	positions = append(positions, 0)
	for _, p := range positions {
		d := copyDir(t, dir)
		require.NoError(t, os.Truncate(filepath.Join(d, filepath.Base(last)), p))
		next, size := expectedPrefix(bounds, base, p)
		checkRecovered(t, opts, d, m, next, last, size)
		os.RemoveAll(d)
	}
}

func TestIndexRebuild(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildLog(t, dir, 6)
	orig := map[string][]byte{}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), "index") {
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			require.NoError(t, err)
			orig[e.Name()] = b
		}
	}
	segs := segmentLogs(t, dir)
	idx0 := strings.TrimSuffix(filepath.Base(segs[0]), logExt)
	idx1 := strings.TrimSuffix(filepath.Base(segs[1]), logExt)

	for _, tc := range []struct {
		name   string
		damage func(d string)
	}{
		{"all indexes missing", func(d string) {
			for name := range orig {
				require.NoError(t, os.Remove(filepath.Join(d, name)))
			}
		}},
		{"torn index entry", func(d string) {
			require.NoError(t, os.Truncate(filepath.Join(d, idx0+indexExt), 5))
		}},
		{"seal missing", func(d string) {
			p := filepath.Join(d, idx1+timeIndexExt)
			require.NoError(t, os.Truncate(p, int64(len(orig[idx1+timeIndexExt])-tidxEntrySize)))
		}},
		{"garbage offset index", func(d string) {
			p := filepath.Join(d, idx0+indexExt)
			b := append([]byte(nil), orig[idx0+indexExt]...)
			for i := range b {
				b[i] = 0xff
			}
			require.NoError(t, os.WriteFile(p, b, 0o644))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, dir)
			tc.damage(d)
			o := opts
			o.Dir = d
			l, err := Open(o)
			require.NoError(t, err)
			checkLog(t, l, m, 0)
			require.NoError(t, l.Close())
			// Rebuilt indexes are byte-identical to the ones written by appends.
			for name, want := range orig {
				got, err := os.ReadFile(filepath.Join(d, name))
				require.NoError(t, err)
				require.Equal(t, want, got, name)
			}
		})
	}
}

func TestOrphanIndexesAndEmptyLastSegment(t *testing.T) {
	dir := t.TempDir()
	opts, m := buildLog(t, dir, 7)
	// Leftovers of an interrupted retention run, and an empty segment created
	// by a roll just before a crash.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000000000000000007.index"), []byte("junk"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "00000000000000000007.timeindex"), nil, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "unrelated.txt"), []byte("keep"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, segmentFileName(m.next(), logExt)), nil, 0o644))

	l, err := Open(opts)
	require.NoError(t, err)
	defer l.Close()
	checkLog(t, l, m, 0)
	_, err = os.Stat(filepath.Join(dir, "00000000000000000007.index"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(filepath.Join(dir, "00000000000000000007.timeindex"))
	require.ErrorIs(t, err, os.ErrNotExist)
	_, err = os.Stat(filepath.Join(dir, "unrelated.txt"))
	require.NoError(t, err)
	m.appendBatch(t, l, []int{10}, []int64{1})
	checkLog(t, l, m, 0)
}
