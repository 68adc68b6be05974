package partitionlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// openTest opens a log in a fresh temp dir (unless opts.Dir is set) and closes
// it at the end of the test.
func openTest(t testing.TB, opts Options) *Log {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	l, err := Open(opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		if err := l.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

// payload returns deterministic data for record i of length n.
func payload(i int64, n int) []byte {
	prefix := fmt.Sprintf("rec-%d|", i)
	b := make([]byte, n)
	for j := range b {
		b[j] = prefix[j%len(prefix)]
	}
	return b
}

// model is the expected content of a log.
type model struct {
	entries []Entry
}

func (m *model) next() int64 { return int64(len(m.entries)) }

// appendBatch appends records built from sizes and timestamps and records
// them in the model.
func (m *model) appendBatch(t testing.TB, l *Log, sizes []int, tss []int64) {
	t.Helper()
	recs := make([]Record, len(sizes))
	for i := range sizes {
		off := m.next() + int64(i)
		recs[i] = Record{Timestamp: tss[i], Data: payload(off, sizes[i])}
	}
	first, err := l.Append(context.Background(), recs)
	require.NoError(t, err)
	require.Equal(t, m.next(), first)
	for i, r := range recs {
		m.entries = append(m.entries, Entry{Offset: first + int64(i), Timestamp: r.Timestamp, Data: r.Data})
	}
}

// readAll reads every visible entry from `from` with the given byte budget.
func readAll(t testing.TB, l *Log, from int64, maxBytes int) []Entry {
	t.Helper()
	var out []Entry
	for from < l.NextOffset() {
		es, err := l.Read(from, maxBytes)
		require.NoError(t, err)
		require.NotEmpty(t, es, "read at %d below next offset %d returned nothing", from, l.NextOffset())
		out = append(out, es...)
		from = es[len(es)-1].Offset + 1
	}
	return out
}

func requireEntries(t testing.TB, want, got []Entry) {
	t.Helper()
	require.Equal(t, len(want), len(got), "entry count")
	for i := range want {
		w, g := want[i], got[i]
		if w.Offset != g.Offset || w.Timestamp != g.Timestamp || !bytes.Equal(w.Data, g.Data) {
			t.Fatalf("entry %d: want {off %d ts %d len %d}, got {off %d ts %d len %d data %q}",
				i, w.Offset, w.Timestamp, len(w.Data), g.Offset, g.Timestamp, len(g.Data), g.Data)
		}
	}
}

// bruteOffsetForTime is the reference implementation of OffsetForTime.
func bruteOffsetForTime(entries []Entry, start int64, ts int64) int64 {
	for _, e := range entries {
		if e.Offset >= start && e.Timestamp >= ts {
			return e.Offset
		}
	}
	if len(entries) == 0 {
		return start
	}
	return entries[len(entries)-1].Offset + 1
}

func segmentLogs(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), logExt) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}

// batchBound is where a batch ends in a segment file and the next offset after it.
type batchBound struct {
	pos, end, next int64
}

// batchBounds lists the batches of a segment file (which must be valid).
func batchBounds(t testing.TB, path string, base int64) []batchBound {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	fi, err := f.Stat()
	require.NoError(t, err)
	sc := newScanner(f, path, 0, fi.Size(), base, nil)
	var out []batchBound
	for {
		b, err := sc.next()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out = append(out, batchBound{pos: b.pos, end: sc.pos, next: b.next()})
	}
}

// copyDir copies the regular files of src into a new temp dir.
func copyDir(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	ents, err := os.ReadDir(src)
	require.NoError(t, err)
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644))
	}
	return dst
}
