package partitionlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAssignEpoch follows the cases of Kafka's LeaderEpochFileCacheTest, with
// this package's stricter rule that an epoch below the latest is refused.
func TestAssignEpoch(t *testing.T) {
	type op struct{ epoch, start int64 }
	cases := []struct {
		name    string
		ops     []op
		want    []EpochEntry
		wantErr bool // the last op fails
	}{
		{"first", []op{{2, 6}}, []EpochEntry{{2, 6}}, false},
		{"increasing", []op{{2, 6}, {3, 8}, {5, 8 + 1}}, []EpochEntry{{2, 6}, {3, 8}, {5, 9}}, false},
		{"same epoch, same offset: no-op", []op{{2, 6}, {2, 6}}, []EpochEntry{{2, 6}}, false},
		{"same epoch, higher offset: no-op", []op{{2, 6}, {2, 9}}, []EpochEntry{{2, 6}}, false},
		{"same epoch, lower offset moves its start", []op{{1, 0}, {2, 6}, {2, 5}}, []EpochEntry{{1, 0}, {2, 5}}, false},
		{"new epoch at the previous start replaces it", []op{{2, 6}, {3, 6}}, []EpochEntry{{3, 6}}, false},
		{"new epoch below earlier starts removes them", []op{{2, 6}, {3, 8}, {4, 10}, {5, 7}}, []EpochEntry{{2, 6}, {5, 7}}, false},
		{"new epoch below every start", []op{{2, 6}, {3, 8}, {5, 1}}, []EpochEntry{{5, 1}}, false},
		{"lower epoch refused", []op{{2, 6}, {3, 8}, {1, 9}}, []EpochEntry{{2, 6}, {3, 8}}, true},
		{"negative epoch refused", []op{{-1, 0}}, nil, true},
		{"negative offset refused", []op{{1, -5}}, nil, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openTest(t, Options{Dir: dir})
			for i, o := range c.ops {
				err := l.AssignEpoch(o.epoch, o.start)
				if i == len(c.ops)-1 && c.wantErr {
					require.ErrorIs(t, err, ErrInvalidEpoch)
				} else {
					require.NoError(t, err)
				}
			}
			require.Equal(t, c.want, l.Epochs())
			latest, ok := l.LatestEpoch()
			require.Equal(t, len(c.want) > 0, ok)
			if ok {
				require.Equal(t, c.want[len(c.want)-1], latest)
			}
			// Persisted: a reopen loads the same history.
			require.NoError(t, l.Close())
			l2 := openTest(t, Options{Dir: dir})
			require.Equal(t, c.want, l2.Epochs())
		})
	}
}

// TestEndOffsetForEpoch: Kafka's OffsetForLeaderEpoch answers as this package
// defines them (see EndOffsetForEpoch).
func TestEndOffsetForEpoch(t *testing.T) {
	l := openTest(t, Options{})
	e, o := l.EndOffsetForEpoch(0)
	require.Equal(t, [2]int64{-1, -1}, [2]int64{e, o}, "empty history")
	for range 20 {
		_, err := l.Append(t.Context(), []Record{{Data: []byte("x")}})
		require.NoError(t, err)
	}
	for _, a := range []EpochEntry{{2, 6}, {4, 10}, {5, 15}} {
		require.NoError(t, l.AssignEpoch(a.Epoch, a.StartOffset))
	}
	for _, c := range []struct{ req, epoch, end int64 }{
		{0, 0, 6}, // below every known epoch: ends where the first known starts
		{1, 1, 6},
		{2, 2, 10},   // a known epoch ends where the next one starts
		{3, 2, 10},   // an unknown epoch between two: the one below it
		{4, 4, 15},   //
		{5, 5, 20},   // the latest ends at NextOffset
		{9, 5, 20},   // above the latest: the latest
		{-1, -1, -1}, // Kafka's UNDEFINED_EPOCH
	} {
		e, o := l.EndOffsetForEpoch(c.req)
		require.Equal(t, [2]int64{c.epoch, c.end}, [2]int64{e, o}, "epoch %d", c.req)
	}
}

// TestEpochsFollowTruncation: truncation drops the entries at or after the
// new end, reset drops all, retention compacts those below the start; all of
// it survives a reopen.
func TestEpochsFollowTruncation(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 500}
	l := openTest(t, opts)
	ctx := context.Background()
	for range 100 {
		_, err := l.Append(ctx, []Record{{Data: make([]byte, 40)}})
		require.NoError(t, err)
	}
	for _, a := range []EpochEntry{{0, 0}, {1, 30}, {2, 60}, {4, 80}} {
		require.NoError(t, l.AssignEpoch(a.Epoch, a.StartOffset))
	}
	_, err := l.TruncateTo(ctx, 85)
	require.NoError(t, err)
	require.Equal(t, []EpochEntry{{0, 0}, {1, 30}, {2, 60}, {4, 80}}, l.Epochs())
	_, err = l.TruncateTo(ctx, 80)
	require.NoError(t, err)
	require.Equal(t, []EpochEntry{{0, 0}, {1, 30}, {2, 60}}, l.Epochs(), "an epoch starting at the new end goes")
	e, o := l.EndOffsetForEpoch(4)
	require.Equal(t, [2]int64{2, 80}, [2]int64{e, o})

	n, err := l.TrimBefore(45)
	require.NoError(t, err)
	require.Positive(t, n)
	start := l.StartOffset()
	require.Greater(t, start, int64(30))
	require.LessOrEqual(t, start, int64(45))
	require.Equal(t, []EpochEntry{{1, start}, {2, 60}}, l.Epochs(), "compacted to the start")
	n, err = l.TrimBefore(70)
	require.NoError(t, err)
	require.Positive(t, n)
	start = l.StartOffset()
	require.Greater(t, start, int64(60))
	require.Equal(t, []EpochEntry{{2, start}}, l.Epochs())

	require.NoError(t, l.Close())
	l = openTest(t, opts)
	require.Equal(t, []EpochEntry{{2, start}}, l.Epochs())
	require.NoError(t, l.Reset(ctx, 500))
	require.Empty(t, l.Epochs())
	require.NoError(t, l.AssignEpoch(7, 500))
	require.NoError(t, l.Close())
	l = openTest(t, opts)
	require.Equal(t, []EpochEntry{{7, 500}}, l.Epochs())
}

// TestDamagedEpochFile: Open refuses a history file that fails its checks,
// naming it, instead of starting with fewer entries; a leftover temp file of
// an interrupted write is ignored.
func TestDamagedEpochFile(t *testing.T) {
	dir := t.TempDir()
	l := openTest(t, Options{Dir: dir})
	for _, a := range []EpochEntry{{1, 0}, {3, 10}, {4, 20}} {
		require.NoError(t, l.AssignEpoch(a.Epoch, a.StartOffset))
	}
	require.NoError(t, l.Close())
	path := filepath.Join(dir, epochFileName)
	good, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(good), epochFileHeader+"\n3\n1 0\n3 10\n4 20\ncrc32c "), string(good))

	lines := strings.SplitAfter(string(good), "\n")
	damages := map[string]string{
		"bit flip":       strings.Replace(string(good), "3 10", "3 11", 1),
		"last entry cut": strings.Join(append(append([]string{}, lines[:4]...), lines[5:]...), ""),
		"torn":           string(good[:len(good)-4]),
		"no checksum":    strings.Join(lines[:5], ""),
		"empty":          "",
	}
	for name, data := range damages {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(path, []byte(data), 0o644))
			_, err := Open(Options{Dir: dir, Logger: quietLogger()})
			require.ErrorIs(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), epochFileName)
		})
	}
	// Consistent checksum, inconsistent content.
	for name, body := range map[string]string{
		"out of order": epochFileHeader + "\n2\n3 10\n1 20\n",
		"wrong count":  epochFileHeader + "\n3\n1 0\n",
		"bad header":   "something else 1\n0\n",
		"bad number":   epochFileHeader + "\n1\n1 +5\n",
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, writeChecksummedFile(dir, epochFileName, body))
			_, err := Open(Options{Dir: dir, Logger: quietLogger()})
			require.ErrorIs(t, err, ErrCorrupt)
			require.Contains(t, err.Error(), epochFileName)
		})
	}

	require.NoError(t, os.WriteFile(path, good, 0o644))
	require.NoError(t, os.WriteFile(path+".tmp", []byte("half-written"), 0o644))
	l = openTest(t, Options{Dir: dir})
	require.Equal(t, []EpochEntry{{1, 0}, {3, 10}, {4, 20}}, l.Epochs())
	_, err = os.Stat(path + ".tmp")
	require.ErrorIs(t, err, os.ErrNotExist)
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.AssignEpoch(5, 30), ErrClosed)
}

// TestEpochsConcurrent: the history is read while appends, assignments and
// truncations change it (for the race detector), and always satisfies its
// invariants.
func TestEpochsConcurrent(t *testing.T) {
	l := openTest(t, Options{SegmentBytes: 600})
	ctx := context.Background()
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan string, 4)
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				es := l.Epochs()
				for i := 1; i < len(es); i++ {
					if es[i].Epoch <= es[i-1].Epoch || es[i].StartOffset < es[i-1].StartOffset {
						errs <- fmt.Sprintf("history out of order: %v", es)
						return
					}
				}
				if e, o := l.EndOffsetForEpoch(1 << 40); len(es) > 0 && (e < 0 || o < 0) {
					errs <- fmt.Sprintf("EndOffsetForEpoch(max) = %d, %d with history %v", e, o, es)
					return
				}
			}
		}()
	}
	epoch := int64(0)
	for round := range 40 {
		for range 5 {
			_, err := l.Append(ctx, []Record{{Data: make([]byte, 30)}})
			require.NoError(t, err)
		}
		epoch++
		require.NoError(t, l.AssignEpoch(epoch, l.NextOffset()-3))
		if round%4 == 3 {
			_, err := l.TruncateTo(ctx, l.NextOffset()-7)
			require.NoError(t, err)
			for _, e := range l.Epochs() {
				require.Less(t, e.StartOffset, l.NextOffset())
			}
		}
		if round%10 == 9 {
			_, err := l.TrimBefore(l.NextOffset() - 20)
			require.NoError(t, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}
