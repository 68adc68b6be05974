package partitionlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var errInjected = errors.New("injected fault")

// buildBatchLog writes n random batches (records and opaque) to a new log
// of small segments and closes it.
func buildBatchLog(t *testing.T, opts Options, seed uint64, n int) (Options, *bmodel) {
	t.Helper()
	opts.Dir = t.TempDir()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(opts)
	require.NoError(t, err)
	var m bmodel
	m.fill(t, l, rand.New(rand.NewPCG(seed, 1)), n, 1_700_000_000_000)
	require.NoError(t, l.Close())
	return opts, &m
}

func segmentBases(t testing.TB, dir string) []int64 {
	t.Helper()
	var out []int64
	for _, p := range segmentLogs(t, dir) {
		base, _, ok := parseSegmentFileName(filepath.Base(p))
		require.True(t, ok)
		out = append(out, base)
	}
	return out
}

func (m *bmodel) clone() *bmodel {
	return &bmodel{start: m.start, batches: append([]BatchView(nil), m.batches...)}
}

// TestTruncateTo truncates copies of one log at batch boundaries, inside
// batches, at segment boundaries, at 0 and beyond the end, plain and
// encrypted, sync and async; the result is checked, appended to, and
// checked again after a reopen.
func TestTruncateTo(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
			t.Run(fmt.Sprintf("encrypted=%v/%s", enc, d), func(t *testing.T) {
				base := Options{SegmentBytes: 1200, IndexIntervalBytes: 90, Durability: d}
				if enc {
					base.Keys = mustKeyring(t, testKey(1, 3))
				}
				opts, m := buildBatchLog(t, base, 11, 90)
				bases := segmentBases(t, opts.Dir)
				require.Greater(t, len(bases), 5)
				var multi BatchView // a batch of several records in the middle
				for _, b := range m.batches[len(m.batches)/3:] {
					if b.Count > 1 {
						multi = b
						break
					}
				}
				require.Positive(t, multi.Count)
				last := m.batches[len(m.batches)-1]
				targets := map[string]int64{
					"zero":                0,
					"first batch":         1,
					"inside a batch":      multi.BaseOffset + 1,
					"batch boundary":      multi.BaseOffset,
					"segment boundary":    bases[2],
					"inside segment 1":    bases[1] + 1,
					"last segment base":   bases[len(bases)-1],
					"last offset":         m.next() - 1,
					"last batch boundary": last.BaseOffset,
					"end":                 m.next(),
					"beyond end":          m.next() + 100,
				}
				for name, o := range targets {
					t.Run(name, func(t *testing.T) {
						o := o
						dir := copyDir(t, opts.Dir)
						opts := opts
						opts.Dir = dir
						l, err := Open(opts)
						require.NoError(t, err)
						want := m.clone()
						wantNext := want.truncate(o)
						next, err := l.TruncateTo(t.Context(), o)
						require.NoError(t, err)
						require.Equal(t, wantNext, next)
						checkBatchLog(t, l, want)
						for _, b := range segmentBases(t, dir) {
							require.LessOrEqual(t, b, max(wantNext, 0), "segment %d left behind", b)
						}
						want.fill(t, l, rand.New(rand.NewPCG(uint64(o), 2)), 15, 1_800_000_000_000)
						checkBatchLog(t, l, want)
						require.NoError(t, l.Close())
						l, err = Open(opts)
						require.NoError(t, err)
						defer l.Close()
						checkBatchLog(t, l, want)
						_, err = os.Stat(filepath.Join(dir, intentFileName))
						require.ErrorIs(t, err, os.ErrNotExist)
					})
				}
			})
		}
	}
}

// TestTruncateBelowStartResets: truncating below StartOffset empties the
// log and restarts it at the offset, as Kafka's truncateTo does.
func TestTruncateBelowStartResets(t *testing.T) {
	opts, m := buildBatchLog(t, Options{SegmentBytes: 800}, 2, 60)
	l, err := Open(opts)
	require.NoError(t, err)
	defer l.Close()
	_, err = l.TrimBefore(m.next() / 2)
	require.NoError(t, err)
	start := l.StartOffset()
	require.Greater(t, start, int64(10))
	next, err := l.TruncateTo(t.Context(), start-3)
	require.NoError(t, err)
	require.Equal(t, start-3, next)
	require.Equal(t, start-3, l.StartOffset())
	m = &bmodel{start: start - 3}
	checkBatchLog(t, l, m)
	m.fill(t, l, rand.New(rand.NewPCG(1, 1)), 5, 0)
	checkBatchLog(t, l, m)

	_, err = l.TruncateTo(t.Context(), -1)
	require.ErrorIs(t, err, ErrOffsetOutOfRange)
}

// TestReset empties the log at various offsets: below, inside and past the
// data, and at the base of an existing segment.
func TestReset(t *testing.T) {
	opts, m := buildBatchLog(t, Options{SegmentBytes: 1000}, 4, 50)
	for _, x := range []int64{0, 7, m.next(), m.next() + 1000, 1 << 40} {
		t.Run(fmt.Sprint(x), func(t *testing.T) {
			opts := opts
			opts.Dir = copyDir(t, opts.Dir)
			l, err := Open(opts)
			require.NoError(t, err)
			require.NoError(t, l.AssignEpoch(1, 0))
			require.NoError(t, l.Reset(t.Context(), x))
			want := &bmodel{start: x}
			checkBatchLog(t, l, want)
			require.Empty(t, l.Epochs())
			require.Equal(t, []int64{x}, segmentBases(t, opts.Dir))
			want.fill(t, l, rand.New(rand.NewPCG(uint64(x), 3)), 30, 5)
			checkBatchLog(t, l, want)
			require.NoError(t, l.Close())
			l, err = Open(opts)
			require.NoError(t, err)
			defer l.Close()
			checkBatchLog(t, l, want)
			require.Empty(t, l.Epochs())
		})
	}
	l := openTest(t, Options{})
	require.ErrorIs(t, l.Reset(t.Context(), -5), ErrOffsetOutOfRange)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, l.Reset(ctx, 5), context.Canceled)
	require.Equal(t, int64(0), l.NextOffset())
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.Reset(t.Context(), 5), ErrClosed)
	_, err := l.TruncateTo(t.Context(), 0)
	require.ErrorIs(t, err, ErrClosed)
}

// TestTruncateOrderedWithAppends: appends queued before a truncation are
// written (and cut), appends queued after it land at the new end.
func TestTruncateOrderedWithAppends(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		t.Run(d.String(), func(t *testing.T) {
			l := openTest(t, Options{Durability: d})
			ctx := t.Context()
			for i := range 10 {
				_, err := l.Append(ctx, []Record{{Data: []byte{byte(i)}}})
				require.NoError(t, err)
			}
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			l.hooks = &testHooks{writeAt: func(f *os.File, p []byte, off int64) (int, error) {
				once.Do(func() { close(entered); <-release })
				return f.WriteAt(p, off)
			}}
			queued := func() int { l.qmu.Lock(); defer l.qmu.Unlock(); return len(l.queue) }
			type result struct {
				off int64
				err error
			}
			held, before, trunc, after := make(chan result, 1), make(chan result, 1), make(chan result, 1), make(chan result, 1)
			enqueue := func(ch chan result, f func() (int64, error)) {
				n := queued()
				go func() { off, err := f(); ch <- result{off, err} }()
				for queued() == n {
					time.Sleep(100 * time.Microsecond)
				}
			}
			go func() { off, err := l.Append(ctx, []Record{{Data: []byte("held")}}); held <- result{off, err} }()
			<-entered
			enqueue(before, func() (int64, error) { return l.Append(ctx, []Record{{Data: []byte("b1")}, {Data: []byte("b2")}}) })
			enqueue(trunc, func() (int64, error) { return l.TruncateTo(ctx, 5) })
			enqueue(after, func() (int64, error) { return l.Append(ctx, []Record{{Data: []byte("after")}}) })
			close(release)
			require.Equal(t, result{10, nil}, <-held)
			require.Equal(t, result{11, nil}, <-before)
			require.Equal(t, result{5, nil}, <-trunc)
			require.Equal(t, result{5, nil}, <-after)
			l.hooks = nil
			es := readAll(t, l, 0, 1<<20)
			require.Len(t, es, 6)
			require.Equal(t, []byte("after"), es[5].Data)
		})
	}
}

// TestTruncateWaitFor: a waiter for an offset that a truncation removed
// keeps waiting until the log grows past it again.
func TestTruncateWaitFor(t *testing.T) {
	l := openTest(t, Options{})
	ctx := t.Context()
	for range 4 {
		_, err := l.Append(ctx, []Record{{Data: []byte("x")}})
		require.NoError(t, err)
	}
	_, err := l.TruncateTo(ctx, 1)
	require.NoError(t, err)
	woke := make(chan error, 1)
	go func() { woke <- l.WaitFor(ctx, 2) }()
	_, err = l.Append(ctx, []Record{{Data: []byte("y")}}) // NextOffset 2: offset 2 is not there yet
	require.NoError(t, err)
	select {
	case err := <-woke:
		t.Fatalf("WaitFor(2) returned at NextOffset %d: %v", l.NextOffset(), err)
	default:
	}
	_, err = l.Append(ctx, []Record{{Data: []byte("z")}})
	require.NoError(t, err)
	require.NoError(t, <-woke)
}

// concData is data that names its offset and the round that wrote it, so
// that a reader can tell a stale or misplaced record from a valid one.
func concData(off int64, round int) []byte {
	return bytes.Repeat(fmt.Appendf(nil, "o%d;r%d|", off, round), 1+int(off%5))
}

// TestTruncateConcurrentReaders: readers running while the log is truncated,
// reset and appended to get records that are whole and at their offsets,
// never an error and never bytes of another offset.
func TestTruncateConcurrentReaders(t *testing.T) {
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		t.Run(d.String(), func(t *testing.T) {
			l := openTest(t, Options{Durability: d, SegmentBytes: 1500, IndexIntervalBytes: 100})
			ctx := t.Context()
			var stop atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			check := func(off int64, data []byte) error {
				if !bytes.HasPrefix(data, fmt.Appendf(nil, "o%d;", off)) {
					return fmt.Errorf("offset %d holds %q", off, data)
				}
				return nil
			}
			for r := range 3 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(r), 9))
					for !stop.Load() {
						start, next := l.StartOffset(), l.NextOffset()
						if next <= start {
							continue
						}
						from := start + rng.Int64N(next-start)
						if r%2 == 0 {
							es, err := l.Read(from, 1+rng.IntN(2000))
							if err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
								errs <- err
								return
							}
							for _, e := range es {
								if err := check(e.Offset, e.Data); err != nil {
									errs <- err
									return
								}
							}
						} else {
							bs, err := l.ReadBatches(from, 1+rng.IntN(2000))
							if err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
								errs <- err
								return
							}
							for _, b := range bs {
								if err := ForEachRecord(b, func(off, _ int64, d []byte) bool {
									err = check(off, d)
									return err == nil
								}); err != nil {
									errs <- err
									return
								}
								if err != nil {
									errs <- err
									return
								}
							}
						}
					}
				}()
			}
			rng := rand.New(rand.NewPCG(7, 7))
			rounds := 60
			if testing.Short() {
				rounds = 20
			}
			for round := range rounds {
				for range 1 + rng.IntN(20) {
					next := l.NextOffset()
					n := 1 + rng.IntN(3)
					recs := make([]Record, n)
					for i := range recs {
						recs[i] = Record{Timestamp: int64(round), Data: concData(next+int64(i), round)}
					}
					_, err := l.Append(ctx, recs)
					require.NoError(t, err)
				}
				next := l.NextOffset()
				start := l.StartOffset()
				switch {
				case round%15 == 14:
					require.NoError(t, l.Reset(ctx, next+rng.Int64N(5)))
				default:
					_, err := l.TruncateTo(ctx, start+rng.Int64N(next-start+1))
					require.NoError(t, err)
				}
			}
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
		})
	}
}

// truncCase is an operation whose crash safety TestTruncateCrashSafety checks.
type truncCase struct {
	name string
	run  func(ctx context.Context, l *Log) error
	want func(m *bmodel) *bmodel // the new state
}

func truncCases(m *bmodel, bases []int64) []truncCase {
	inActive := m.batches[len(m.batches)-3].BaseOffset + 1
	inSealed := bases[1] + 2
	reset := m.next() / 2
	truncTo := func(o int64) func(ctx context.Context, l *Log) error {
		return func(ctx context.Context, l *Log) error { _, err := l.TruncateTo(ctx, o); return err }
	}
	truncated := func(o int64) func(m *bmodel) *bmodel {
		return func(m *bmodel) *bmodel { n := m.clone(); n.truncate(o); return n }
	}
	return []truncCase{
		{"truncate in active segment", truncTo(inActive), truncated(inActive)},
		{"truncate into sealed segment", truncTo(inSealed), truncated(inSealed)},
		{"truncate to zero", truncTo(0), truncated(0)},
		{"reset", func(ctx context.Context, l *Log) error { return l.Reset(ctx, reset) }, func(*bmodel) *bmodel { return &bmodel{start: reset} }},
	}
}

// epochsFor is the epoch history the crash test assigns, cut like a
// truncation to next (or emptied by a reset).
func epochsFor(m *bmodel) []EpochEntry {
	all := []EpochEntry{{0, 0}, {1, 20}, {3, 60}, {4, 130}}
	var out []EpochEntry
	for _, e := range all {
		if e.StartOffset < m.next() && m.start == 0 {
			out = append(out, e)
		}
	}
	return out
}

// TestTruncateCrashSafety fails a truncation or reset at each of its steps
// (by the step hook, and by a failing fsync), takes a copy of the directory
// at that moment as a crash would leave it, and checks that the copy opens
// to the old state if the intent was not yet written and to the new state
// otherwise; the live log is in the same state, and finishes the operation
// before its next append.
func TestTruncateCrashSafety(t *testing.T) {
	opts, m := buildBatchLog(t, Options{SegmentBytes: 1000, IndexIntervalBytes: 80}, 8, 60)
	l, err := Open(opts)
	require.NoError(t, err)
	for _, e := range epochsFor(m) {
		require.NoError(t, l.AssignEpoch(e.Epoch, e.StartOffset))
	}
	require.NoError(t, l.Close())
	require.Len(t, epochsFor(m), 4)
	bases := segmentBases(t, opts.Dir)
	require.Greater(t, len(bases), 4)

	type fault struct {
		name    string
		before  bool // the intent is not durable yet: the old state stays
		liveOld bool // the live log takes the intent back: the old state stays
		hook    func(fire func() error) *testHooks
	}
	stepFault := func(step string) func(fire func() error) *testHooks {
		return func(fire func() error) *testHooks {
			return &testHooks{truncStep: func(s string) error {
				if s == step {
					return fire()
				}
				return nil
			}}
		}
	}
	faults := []fault{
		{"intent", true, false, stepFault("intent")},
		{"files", false, false, stepFault("files")},
		{"epochs", false, false, stepFault("epochs")},
		{"done", false, false, stepFault("done")},
		{"fsync", false, false, func(fire func() error) *testHooks {
			// The first fsync of segment data is the truncation's (or the
			// reset's, cutting the new segment's files).
			return &testHooks{beforeSync: func(*os.File) error { return fire() }}
		}},
		{"create", false, true, func(fire func() error) *testHooks {
			// A reset to a new base offset cannot create its segment (a full
			// disk): the live log takes the intent back; a crash just then
			// finishes the reset at Open. Truncations create nothing.
			return &testHooks{beforeCreate: fire}
		}},
	}
	for _, c := range truncCases(m, bases) {
		for _, f := range faults {
			t.Run(c.name+"/"+f.name, func(t *testing.T) {
				opts := opts
				opts.Dir = copyDir(t, opts.Dir)
				l, err := Open(opts)
				require.NoError(t, err)
				defer l.Close()
				var snapshot string
				var fired atomic.Bool
				l.hooks = f.hook(func() error {
					if fired.Swap(true) {
						return nil
					}
					snapshot = copyDir(t, opts.Dir)
					return errInjected
				})
				err = c.run(t.Context(), l)
				if !fired.Load() {
					require.True(t, f.name == "create" && c.name != "reset", "the fault never fired")
					require.NoError(t, err)
					return
				}
				require.ErrorIs(t, err, errInjected)
				require.Contains(t, err.Error(), "partitionlog: ")
				want := c.want(m)
				if f.before {
					want = m
				}

				// The crash: the copy opens to exactly one of the two states.
				crashed, err := Open(Options{Dir: snapshot, Logger: quietLogger(), Keys: opts.Keys})
				require.NoError(t, err)
				checkBatchLog(t, crashed, want)
				require.Equal(t, epochsFor(want), crashed.Epochs())
				require.NoError(t, crashed.Close())

				// The live log is in that state too (or, if the reset could
				// not even start, in the old one), and goes on.
				l.hooks = nil
				if f.liveOld {
					want = m
				}
				require.Equal(t, want.next(), l.NextOffset())
				wantEpochs := epochsFor(want)
				want = want.clone()
				want.fill(t, l, rand.New(rand.NewPCG(1, 1)), 5, 2_000_000_000_000)
				checkBatchLog(t, l, want)
				require.Equal(t, wantEpochs, l.Epochs())
				require.NoError(t, l.Close())
				l, err = Open(opts)
				require.NoError(t, err)
				checkBatchLog(t, l, want)
			})
		}
	}
}

// TestDamagedIntentFile: an intent file that fails its checksum stops Open
// rather than guessing whether to truncate.
func TestDamagedIntentFile(t *testing.T) {
	opts, _ := buildBatchLog(t, Options{}, 1, 10)
	path := filepath.Join(opts.Dir, intentFileName)
	require.NoError(t, writeChecksummedFile(opts.Dir, intentFileName, intentFileHeader+"\ntruncate 3 0 100 0 0\n"))
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	data[len(intentFileHeader)+5] ^= 1
	require.NoError(t, os.WriteFile(path, data, 0o644))
	_, err = Open(opts)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), intentFileName)

	// The same intent intact is finished by Open.
	require.NoError(t, writeChecksummedFile(opts.Dir, intentFileName, intentFileHeader+"\nreset 42\n"))
	l, err := Open(opts)
	require.NoError(t, err)
	defer l.Close()
	require.Equal(t, int64(42), l.StartOffset())
	require.Equal(t, int64(42), l.NextOffset())
}

// TestTruncateFailsOnFullDisk: a truncation whose fsync fails returns the
// error wrapping the cause; the log is truncated and finishes the work
// before the next append.
func TestTruncateFailsOnFullDisk(t *testing.T) {
	l := openTest(t, Options{})
	for range 5 {
		_, err := l.Append(t.Context(), []Record{{Data: []byte("x")}})
		require.NoError(t, err)
	}
	var full atomic.Bool
	full.Store(true)
	l.hooks = &testHooks{beforeSync: func(f *os.File) error {
		if full.Load() {
			return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: syscall.EIO}
		}
		return nil
	}}
	_, err := l.TruncateTo(t.Context(), 2)
	require.ErrorIs(t, err, syscall.EIO)
	require.Equal(t, int64(2), l.NextOffset())
	_, err = l.Append(t.Context(), []Record{{Data: []byte("y")}})
	require.ErrorIs(t, err, syscall.EIO, "the truncation is finished first")
	full.Store(false)
	off, err := l.Append(t.Context(), []Record{{Data: []byte("y")}})
	require.NoError(t, err)
	require.Equal(t, int64(2), off)
	_, err = os.Stat(filepath.Join(l.dir, intentFileName))
	require.ErrorIs(t, err, os.ErrNotExist)
}
