package partitionlog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The resident memory of a log must not grow with its backlog.
// TestBacklogRSS runs only when PARTITIONLOG_RSS_RECORDS lists backlog sizes
// (for example "1000000,10000000"): for each, it fills a log with that many
// 100-byte records (in PARTITIONLOG_RSS_DIR if set, else the temp dir), then
// starts a fresh process that opens the log, reads its tail, its head, the
// middle found by time and random offsets, and reports its VmRSS; the data
// is deleted afterwards. 100M records take about 10 GB of disk.
const (
	rssRecordsEnv = "PARTITIONLOG_RSS_RECORDS"
	rssDirEnv     = "PARTITIONLOG_RSS_DIR"
	rssChildEnv   = "PARTITIONLOG_RSS_CHILD_DIR"
)

func TestBacklogRSS(t *testing.T) {
	if dir := os.Getenv(rssChildEnv); dir != "" {
		rssChild(dir)
		return
	}
	spec := os.Getenv(rssRecordsEnv)
	if spec == "" {
		t.Skip("set " + rssRecordsEnv + " (for example 1000000,10000000) to measure resident memory against backlog size")
	}
	for _, field := range strings.Split(spec, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(field), 10, 64)
		require.NoError(t, err)
		dir, err := os.MkdirTemp(os.Getenv(rssDirEnv), "partitionlog-rss-")
		require.NoError(t, err)
		func() {
			defer os.RemoveAll(dir)
			start := time.Now()
			size := fillRecords(t, dir, n)
			fill := time.Since(start)

			cmd := exec.Command(os.Args[0], "-test.run=^TestBacklogRSS$", "-test.count=1")
			cmd.Env = append(os.Environ(), rssChildEnv+"="+dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			require.NoError(t, err, stderr.String())
			var line string
			for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
				if strings.HasPrefix(sc.Text(), "rss ") {
					line = sc.Text()
				}
			}
			require.NotEmpty(t, line, "child output: %s\n%s", out, stderr.String())
			t.Logf("%d records of 100 B (%.2f GB on disk, filled in %v): %s", n, float64(size)/1e9, fill.Round(time.Second), line)
		}()
	}
}

// fillRecords appends n records of 100 bytes, 1000 per batch, one
// millisecond apart, and returns the log's size on disk.
func fillRecords(t *testing.T, dir string, n int64) int64 {
	l, err := Open(Options{Dir: dir, Durability: DurabilityAsync, Logger: quietLogger()})
	require.NoError(t, err)
	recs := make([]Record, 1000)
	data := make([]byte, 100)
	for off := int64(0); off < n; off += int64(len(recs)) {
		k := min(int64(len(recs)), n-off)
		for i := range k {
			recs[i] = Record{Timestamp: off + i, Data: data}
		}
		_, err := l.Append(context.Background(), recs[:k])
		require.NoError(t, err)
	}
	size := l.Size()
	require.NoError(t, l.Close())
	return size
}

// rssChild opens the log in dir, uses it like a consumer catching up and one
// at the head would, and prints its resident memory.
func rssChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	base := procStatus("VmRSS")
	start := time.Now()
	l, err := Open(Options{Dir: dir, Durability: DurabilityAsync, Logger: quietLogger()})
	if err != nil {
		fail(err)
	}
	openTime := time.Since(start)
	opened := procStatus("VmRSS")
	next := l.NextOffset()
	read := func(from int64) {
		if _, err := l.Read(from, 1<<20); err != nil {
			fail(err)
		}
	}
	read(max(0, next-10_000)) // the tail
	read(0)                   // the head
	mid, err := l.OffsetForTime(next / 2)
	if err != nil || mid != next/2 {
		fail(fmt.Errorf("OffsetForTime(%d) = %d, %v", next/2, mid, err))
	}
	read(mid)
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		read(rng.Int64N(next))
	}
	afterReads := procStatus("VmRSS")
	// What stays resident once the garbage of those reads is returned.
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	l.mu.Lock()
	segs := len(l.segs)
	l.mu.Unlock()
	fmt.Printf("rss base=%dKiB opened=%dKiB after-reads=%dKiB retained=%dKiB peak=%dKiB go-heap-inuse=%dKiB segments=%d records=%d open=%v\n",
		base, opened, afterReads, procStatus("VmRSS"), procStatus("VmHWM"), ms.HeapInuse>>10, segs, next, openTime.Round(time.Millisecond))
	l.Close()
	os.Exit(0)
}

// procStatus returns a "kB" field of /proc/self/status, or -1.
func procStatus(field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
