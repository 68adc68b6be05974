package partitionlog

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type fileSizes struct{ log, idx, tidx int64 }

func activeSizes(t *testing.T, l *Log) fileSizes {
	t.Helper()
	l.mu.Lock()
	s := l.segs[len(l.segs)-1]
	l.mu.Unlock()
	size := func(f *os.File) int64 {
		fi, err := f.Stat()
		require.NoError(t, err)
		return fi.Size()
	}
	return fileSizes{log: size(s.log), idx: size(s.idx), tidx: size(s.tidx)}
}

// TestWriteFailureRollsBack simulates a full disk: the write reaches the file
// partially and then fails with ENOSPC.
func TestWriteFailureRollsBack(t *testing.T) {
	for _, target := range []string{logExt, indexExt, timeIndexExt, "roll"} {
		t.Run(strings.TrimPrefix(target, "."), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: 2000, IndexIntervalBytes: 64, Logger: quietLogger()}
			l, err := Open(opts)
			require.NoError(t, err)
			var m model
			for i := range 30 {
				m.appendBatch(t, l, []int{40, 30}, []int64{int64(i), int64(i)})
			}
			recs := []Record{{Timestamp: 99, Data: make([]byte, 100)}}
			if target == "roll" {
				// Fill the active segment so that the next append rolls; fail
				// the seal entry written to the old segment's time index.
				for l.active.w.size+int64(encodedBatchSize(recs)) <= opts.SegmentBytes {
					m.appendBatch(t, l, []int{40}, []int64{1})
				}
				target = timeIndexExt
			}
			nsegs := len(segmentLogs(t, dir))
			before := activeSizes(t, l)
			var failing atomic.Bool
			failing.Store(true)
			var failures atomic.Int32
			l.hooks = &testHooks{writeAt: func(f *os.File, p []byte, off int64) (int, error) {
				if failing.Load() && strings.HasSuffix(f.Name(), target) {
					failures.Add(1)
					n, _ := f.WriteAt(p[:len(p)/2], off) // part of it hits the disk
					return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
				}
				return f.WriteAt(p, off)
			}}
			for range 3 {
				_, err := l.Append(context.Background(), recs)
				require.ErrorIs(t, err, syscall.ENOSPC)
				require.True(t, strings.HasPrefix(err.Error(), "partitionlog: "), err.Error())
			}
			require.Positive(t, failures.Load())
			require.Equal(t, before, activeSizes(t, l), "failed appends must leave no bytes behind")
			require.Equal(t, m.next(), l.NextOffset())
			require.Len(t, segmentLogs(t, dir), nsegs)
			checkLog(t, l, &m, 0)

			// Space is back: appending continues at the same offset.
			failing.Store(false)
			m.appendBatch(t, l, []int{100}, []int64{99})
			m.appendBatch(t, l, []int{10, 10}, []int64{100, 101})
			checkLog(t, l, &m, 0)
			require.NoError(t, l.Close())
			l, err = Open(opts)
			require.NoError(t, err)
			defer l.Close()
			checkLog(t, l, &m, 0)
		})
	}
}

// TestSyncFailureRollsBack: a failed fsync fails the group and nothing of it
// becomes visible or survives.
func TestSyncFailureRollsBack(t *testing.T) {
	l := openTest(t, Options{})
	var m model
	m.appendBatch(t, l, []int{10}, []int64{1})
	before := activeSizes(t, l)
	var fails atomic.Int32
	fails.Store(1)
	l.hooks = &testHooks{beforeSync: func(*os.File) error {
		if fails.Add(-1) >= 0 {
			return &os.PathError{Op: "fdatasync", Path: "x", Err: syscall.EIO}
		}
		return nil
	}}
	_, err := l.Append(context.Background(), []Record{{Timestamp: 2, Data: []byte("lost")}})
	require.ErrorIs(t, err, syscall.EIO)
	require.Equal(t, before, activeSizes(t, l))
	require.Equal(t, m.next(), l.NextOffset())
	m.appendBatch(t, l, []int{10}, []int64{3})
	checkLog(t, l, &m, 0)
}

// TestTruncateFailureBlocksWrites: if even the rollback fails, nothing more is
// written until it succeeds (so no stale batch can survive behind new data).
func TestTruncateFailureBlocksWrites(t *testing.T) {
	l := openTest(t, Options{})
	var m model
	m.appendBatch(t, l, []int{10}, []int64{1})
	var broken atomic.Bool
	broken.Store(true)
	l.hooks = &testHooks{
		writeAt: func(f *os.File, p []byte, off int64) (int, error) {
			if broken.Load() {
				n, _ := f.WriteAt(p, off) // fully written, then "fails"
				return n, syscall.EIO
			}
			return f.WriteAt(p, off)
		},
		beforeSync: func(*os.File) error {
			if broken.Load() {
				return syscall.EIO // the rollback's fsync fails too
			}
			return nil
		},
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := l.Append(context.Background(), []Record{{Data: []byte("nope")}})
			if !errors.Is(err, syscall.EIO) {
				t.Errorf("want EIO, got %v", err)
			}
		}()
	}
	wg.Wait()
	require.Equal(t, m.next(), l.NextOffset())
	broken.Store(false)
	m.appendBatch(t, l, []int{3}, []int64{2})
	checkLog(t, l, &m, 0)
	fi, err := l.active.log.Stat()
	require.NoError(t, err)
	require.Equal(t, l.active.w.size, fi.Size())
}

// enospc is what a full disk returns from write(2), fdatasync(2) or open(2).
func enospc(f *os.File) error {
	name := "segment"
	if f != nil {
		name = f.Name()
	}
	return &os.PathError{Op: "write", Path: name, Err: syscall.ENOSPC}
}

// TestSyncFailureWhilePipelined: an fsync fails while the writer has already
// written the next chunks behind it. Every append of the failed fsync and of
// the chunks behind it fails, the files are cut back to the last durable
// batch before any of them returns, and the log goes on once the disk does.
func TestSyncFailureWhilePipelined(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, IndexIntervalBytes: 64, Logger: quietLogger()}
	l, err := Open(opts)
	require.NoError(t, err)
	var m model
	for i := range 10 {
		m.appendBatch(t, l, []int{50}, []int64{int64(i)})
	}
	before := activeSizes(t, l)

	const behind = 5
	inSync, release := make(chan struct{}), make(chan struct{})
	var handed atomic.Int32
	var first sync.Once
	l.hooks = &testHooks{
		onHandOff: func(n int) { handed.Add(int32(n)) },
		beforeSync: func(f *os.File) error {
			failed := false
			first.Do(func() { close(inSync); <-release; failed = true })
			if failed {
				return enospc(f)
			}
			return nil
		},
	}
	ctx := context.Background()
	errs := make(chan error, behind+1)
	go func() { _, err := l.Append(ctx, []Record{{Data: make([]byte, 70)}}); errs <- err }()
	<-inSync
	for range behind {
		go func() { _, err := l.Append(ctx, []Record{{Data: make([]byte, 70)}}); errs <- err }()
	}
	require.Eventually(t, func() bool { return handed.Load() == behind+1 }, 10*time.Second, time.Millisecond)
	close(release)
	for range behind + 1 {
		err := <-errs
		require.ErrorIs(t, err, syscall.ENOSPC)
		require.Equal(t, before, activeSizes(t, l), "the files are cut back before an append fails")
	}
	require.Equal(t, m.next(), l.NextOffset())
	checkLog(t, l, &m, 0)

	m.appendBatch(t, l, []int{10, 20}, []int64{100, 101})
	checkLog(t, l, &m, 0)
	require.NoError(t, l.Close())
	l, err = Open(opts)
	require.NoError(t, err)
	defer l.Close()
	checkLog(t, l, &m, 0)
}

// TestFullDisk fills the disk for every operation at once (writes reach the
// file partially, fsyncs and file creation fail) under concurrent appenders,
// in sync and async mode: every append fails with an error wrapping
// syscall.ENOSPC (which the storage role maps to STORAGE_FULL), nothing
// already stored changes, and once space is back the log goes on at the same
// offset and survives a reopen.
func TestFullDisk(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		t.Run(d.String(), func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{Dir: dir, SegmentBytes: 4096, IndexIntervalBytes: 128, Durability: d, Logger: quietLogger()}
			l, err := Open(opts)
			require.NoError(t, err)
			var m model
			for i := range 60 {
				m.appendBatch(t, l, []int{100}, []int64{int64(i)})
			}
			nsegs := len(segmentLogs(t, dir))
			require.Greater(t, nsegs, 1)
			before := activeSizes(t, l)

			var full atomic.Bool
			full.Store(true)
			l.hooks = &testHooks{
				writeAt: func(f *os.File, p []byte, off int64) (int, error) {
					if full.Load() {
						n, _ := f.WriteAt(p[:len(p)/3], off)
						return n, enospc(f)
					}
					return f.WriteAt(p, off)
				},
				beforeCreate: func() error {
					if full.Load() {
						return enospc(nil)
					}
					return nil
				},
			}
			var wg sync.WaitGroup
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 5 {
						// Small batches and ones that would need a roll.
						_, err := l.Append(context.Background(), []Record{{Data: make([]byte, 10+w*300+i)}})
						if !errors.Is(err, syscall.ENOSPC) || !strings.HasPrefix(err.Error(), "partitionlog: ") {
							t.Errorf("append on a full disk: want a partitionlog error wrapping ENOSPC, got %v", err)
						}
					}
				}()
			}
			wg.Wait()
			require.Equal(t, before, activeSizes(t, l), "nothing may be left behind")
			require.Equal(t, m.next(), l.NextOffset())
			require.Len(t, segmentLogs(t, dir), nsegs)
			checkLog(t, l, &m, 0)

			full.Store(false)
			for i := range 30 {
				m.appendBatch(t, l, []int{100, 50}, []int64{int64(100 + i), int64(100 + i)})
			}
			require.Greater(t, len(segmentLogs(t, dir)), nsegs, "rolls work again")
			checkLog(t, l, &m, 0)
			require.NoError(t, l.Close())
			l, err = Open(opts)
			require.NoError(t, err)
			defer l.Close()
			checkLog(t, l, &m, 0)
		})
	}
}

// TestRollCreateFailure: the disk fills up exactly when a roll creates the
// next segment. The old segment's seal entry is taken back, no new file is
// left behind, and the roll succeeds later.
func TestRollCreateFailure(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, SegmentBytes: 2000, IndexIntervalBytes: 64, Logger: quietLogger()}
	l, err := Open(opts)
	require.NoError(t, err)
	var m model
	recs := []Record{{Timestamp: 7, Data: make([]byte, 100)}}
	for l.active.w.size+int64(encodedBatchSize(recs)) <= opts.SegmentBytes {
		m.appendBatch(t, l, []int{40}, []int64{1})
	}
	nsegs := len(segmentLogs(t, dir))
	before := activeSizes(t, l)
	var full atomic.Bool
	full.Store(true)
	l.hooks = &testHooks{beforeCreate: func() error {
		if full.Load() {
			return enospc(nil)
		}
		return nil
	}}
	_, err = l.Append(context.Background(), recs)
	require.ErrorIs(t, err, syscall.ENOSPC)
	require.Equal(t, before, activeSizes(t, l))
	require.Len(t, segmentLogs(t, dir), nsegs)
	checkLog(t, l, &m, 0)

	full.Store(false)
	m.appendBatch(t, l, []int{100}, []int64{7})
	require.Len(t, segmentLogs(t, dir), nsegs+1)
	checkLog(t, l, &m, 0)
	require.NoError(t, l.Close())
	l, err = Open(opts)
	require.NoError(t, err)
	defer l.Close()
	checkLog(t, l, &m, 0)
}
