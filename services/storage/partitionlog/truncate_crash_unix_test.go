//go:build unix

package partitionlog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const truncCrashChildEnv = "PARTITIONLOG_TRUNC_CRASH_CHILD"

// truncCrashModel is the expected state of the log of the truncation crash
// test: batches of records (each a list of payloads) from start.
type truncCrashModel struct {
	start   int64
	batches [][]string
}

func (m *truncCrashModel) next() int64 {
	n := m.start
	for _, b := range m.batches {
		n += int64(len(b))
	}
	return n
}

// truncCrashOp applies op number i, chosen by rng, to the model and returns
// it as a function that applies it to a log. The child and the parent draw
// the same sequence.
func (m *truncCrashModel) op(rng *rand.Rand, i int) func(ctx context.Context, l *Log) error {
	switch k := rng.IntN(20); {
	case k < 14 || m.next() == m.start:
		b := make([]string, 1+rng.IntN(3))
		recs := make([]Record, len(b))
		for j := range b {
			b[j] = fmt.Sprintf("op%d-r%d-%s", i, j, bytes.Repeat([]byte{'x'}, rng.IntN(300)))
			recs[j] = Record{Timestamp: int64(i), Data: []byte(b[j])}
		}
		m.batches = append(m.batches, b)
		return func(ctx context.Context, l *Log) error { _, err := l.Append(ctx, recs); return err }
	case k < 19:
		o := m.start + rng.Int64N(m.next()-m.start+1)
		for len(m.batches) > 0 && m.next() > o {
			m.batches = m.batches[:len(m.batches)-1]
		}
		return func(ctx context.Context, l *Log) error { _, err := l.TruncateTo(ctx, o); return err }
	default:
		x := m.next() + rng.Int64N(10)
		m.start, m.batches = x, nil
		return func(ctx context.Context, l *Log) error { return l.Reset(ctx, x) }
	}
}

func (m *truncCrashModel) entries() []Entry {
	var out []Entry
	off := m.start
	for _, b := range m.batches {
		for _, d := range b {
			out = append(out, Entry{Offset: off, Data: []byte(d)})
			off++
		}
	}
	return out
}

func truncCrashOptions(dir string) Options {
	return Options{Dir: dir, SegmentBytes: 4096, IndexIntervalBytes: 256, Logger: quietLogger()}
}

// truncCrashChild runs the ops of seed on the log in dir, printing "ok <i>"
// once op i returned.
func truncCrashChild(dir string, seed uint64, first int) {
	l, err := Open(truncCrashOptions(dir))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	rng := rand.New(rand.NewPCG(seed, 3))
	// Now and then the child kills itself in the middle of a truncation or
	// reset, at one of its steps: a crash at a point a random kill rarely
	// hits. (Its own generator: the ops must stay the parent's.)
	die := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 4))
	l.hooks = &testHooks{truncStep: func(string) error {
		if die.IntN(40) == 0 {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		return nil
	}}
	var m truncCrashModel
	deadline := time.Now().Add(20 * time.Second) // in case the parent dies
	for i := 0; time.Now().Before(deadline); i++ {
		apply := m.op(rng, i)
		if i < first {
			continue // done by an earlier round
		}
		if err := apply(context.Background(), l); err != nil {
			fmt.Fprintln(os.Stderr, "op:", err)
			os.Exit(3)
		}
		fmt.Fprintf(os.Stdout, "ok %d\n", i)
	}
	os.Exit(0)
}

// TestTruncateCrashRecovery kills a process that appends, truncates and
// resets at a random moment, several times over the same log. After each
// kill the log opens to the state after the last operation that returned,
// or after the one that was running: never anything else.
func TestTruncateCrashRecovery(t *testing.T) {
	if dir := os.Getenv(truncCrashChildEnv); dir != "" {
		var seed uint64
		var first int
		fmt.Sscan(os.Getenv(truncCrashChildEnv+"_SEED"), &seed)
		fmt.Sscan(os.Getenv(truncCrashChildEnv+"_FIRST"), &first)
		truncCrashChild(dir, seed, first)
		return
	}
	rounds := 4
	if testing.Short() {
		rounds = 1
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	dir := t.TempDir()
	done := 0 // ops known to be applied (the log is in the state after them)
	for round := range rounds {
		killAfter := 5 + rng.IntN(300)
		cmd := exec.Command(os.Args[0], "-test.run=^TestTruncateCrashRecovery$", "-test.count=1")
		cmd.Env = append(os.Environ(), truncCrashChildEnv+"="+dir,
			fmt.Sprintf("%s_SEED=%d", truncCrashChildEnv, seed), fmt.Sprintf("%s_FIRST=%d", truncCrashChildEnv, done))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		acked, seen, killed := done-1, 0, false
		for sc.Scan() {
			var i int
			if _, err := fmt.Sscanf(sc.Text(), "ok %d", &i); err != nil {
				continue
			}
			acked = i
			if seen++; seen == killAfter && !killed {
				require.NoError(t, cmd.Process.Kill())
				killed = true
			}
		}
		werr := cmd.Wait()
		var ee *exec.ExitError
		selfKilled := errors.As(werr, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		require.True(t, killed || selfKilled, "child exited early: %v\n%s", werr, stderr.String())

		// The log is the model after op acked, or after op acked+1.
		var logged bytes.Buffer
		opts := truncCrashOptions(dir)
		opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
		l, err := Open(opts)
		require.NoError(t, err)
		if bytes.Contains(logged.Bytes(), []byte("interrupted truncation")) {
			t.Logf("round %d: Open finished an interrupted truncation or reset", round)
		}
		got := readAll(t, l, l.StartOffset(), 1<<20)
		mrng := rand.New(rand.NewPCG(seed, 3))
		var m truncCrashModel
		for i := 0; i <= acked; i++ {
			m.op(mrng, i)
		}
		before := m
		before.batches = append([][]string(nil), m.batches...)
		m.op(mrng, acked+1)
		matches := func(m truncCrashModel) bool {
			want := m.entries()
			if l.StartOffset() != m.start || l.NextOffset() != m.next() || len(got) != len(want) {
				return false
			}
			for i := range want {
				if got[i].Offset != want[i].Offset || !bytes.Equal(got[i].Data, want[i].Data) {
					return false
				}
			}
			return true
		}
		switch {
		case matches(before):
			done = acked + 1
		case matches(m):
			done = acked + 2
		default:
			t.Fatalf("round %d: after op %d acked the log holds [%d, %d) with %d entries; want [%d, %d) or [%d, %d)",
				round, acked, l.StartOffset(), l.NextOffset(), len(got), before.start, before.next(), m.start, m.next())
		}
		_, err = os.Stat(filepath.Join(dir, intentFileName))
		require.ErrorIs(t, err, os.ErrNotExist)
		require.NoError(t, l.Close())
		t.Logf("round %d: killed after op %d returned (next op: start %d next %d -> start %d next %d); %d ops applied",
			round, acked, before.start, before.next(), m.start, m.next(), done)
	}
}
