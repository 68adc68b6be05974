package partitionlog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const crashChildEnv = "PARTITIONLOG_CRASH_CHILD_DIR"

// crashPayload is the data of record j of append seq by writer w.
func crashPayload(w, seq, j int) []byte {
	p := fmt.Sprintf("w%d-s%d-r%d;", w, seq, j)
	return bytes.Repeat([]byte(p), 1+(w*7+seq*13+j*3)%40)
}

func crashRecords(w, seq int) []Record {
	n := 1 + (w+seq)%3
	recs := make([]Record, n)
	for j := range recs {
		recs[j] = Record{Timestamp: int64(seq), Data: crashPayload(w, seq, j)}
	}
	return recs
}

// crashChild appends forever in sync mode from several goroutines and prints
// "ack <writer> <seq> <offset>" after every acknowledged append.
func crashChild(dir string) {
	l, err := Open(Options{Dir: dir, SegmentBytes: 32 << 10, IndexIntervalBytes: 512, Logger: quietLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	deadline := time.Now().Add(20 * time.Second) // in case the parent dies
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; time.Now().Before(deadline); seq++ {
				off, err := l.Append(context.Background(), crashRecords(w, seq))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(os.Stdout, "ack %d %d %d\n", w, seq, off)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(0)
}

type crashAck struct {
	w, seq int
	off    int64
}

func TestCrashRecovery(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	rounds := 3
	if testing.Short() {
		rounds = 1
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 9))
	dir := t.TempDir() // the same log survives several crashes
	var acks []crashAck
	for round := range rounds {
		killAfter := 50 + rng.IntN(1500) // acknowledged appends before the kill
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRecovery$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		sc := bufio.NewScanner(out)
		seen, killed := 0, false
		var roundAcks []crashAck
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 4 || f[0] != "ack" {
				continue
			}
			w, _ := strconv.Atoi(f[1])
			seq, _ := strconv.Atoi(f[2])
			off, _ := strconv.ParseInt(f[3], 10, 64)
			roundAcks = append(roundAcks, crashAck{w, seq, off})
			if seen++; seen == killAfter && !killed {
				require.NoError(t, cmd.Process.Kill()) // SIGKILL
				killed = true
			}
		}
		// Each ack line is a single write(2) of less than PIPE_BUF bytes, so
		// the kill cannot leave a partial line behind.
		werr := cmd.Wait()
		require.True(t, killed, "child exited early: %v\n%s", werr, stderr.String())
		acks = append(acks, roundAcks...)
		t.Logf("round %d: killed after %d acks (%d read)", round, killAfter, len(roundAcks))

		// Every acknowledged append of this round is readable with its data
		// (seqs restart in every round, so check this round's acks).
		l, err := Open(Options{Dir: dir, Logger: quietLogger(), SegmentBytes: 32 << 10, IndexIntervalBytes: 512})
		require.NoError(t, err)
		all := readAll(t, l, 0, 1<<20) // every stored batch passes its CRC
		require.Equal(t, l.NextOffset(), int64(len(all)))
		for _, a := range roundAcks {
			recs := crashRecords(a.w, a.seq)
			require.LessOrEqual(t, a.off+int64(len(recs)), l.NextOffset(), "acknowledged append %+v lost", a)
			for j, r := range recs {
				e := all[a.off+int64(j)]
				require.Equal(t, a.off+int64(j), e.Offset)
				require.Equal(t, r.Data, e.Data, "acknowledged append %+v, record %d", a, j)
			}
		}
		require.NoError(t, l.Close())
	}
	require.NotEmpty(t, acks)
}
