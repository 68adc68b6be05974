package partitionlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var benchSizes = []struct {
	name string
	n    int
}{{"100B", 100}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}}

var benchAppenders = []int{1, 64}

func BenchmarkAppendSync(b *testing.B)  { benchmarkAppend(b, DurabilitySync) }
func BenchmarkAppendAsync(b *testing.B) { benchmarkAppend(b, DurabilityAsync) }

// benchmarkAppend appends b.N single-record batches from a fixed number of
// concurrent appenders. Sub-benchmarks are <record size>/<appenders>.
func benchmarkAppend(b *testing.B, d Durability) {
	for _, size := range benchSizes {
		for _, appenders := range benchAppenders {
			b.Run(fmt.Sprintf("%s/%d", size.name, appenders), func(b *testing.B) {
				l := openTest(b, Options{Durability: d})
				data := make([]byte, size.n)
				ctx := context.Background()
				var issued atomic.Int64
				syncsBefore := l.syncs.Load()
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for range appenders {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for issued.Add(1) <= int64(b.N) {
							if _, err := l.Append(ctx, []Record{{Timestamp: 1, Data: data}}); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(start).Seconds()
				b.StopTimer()
				reportThroughput(b, b.N, size.n, elapsed)
				b.ReportMetric(float64(l.syncs.Load()-syncsBefore)/float64(b.N), "fsyncs/op")
			})
		}
	}
}

func reportThroughput(b *testing.B, msgs, size int, seconds float64) {
	b.ReportMetric(float64(msgs)/seconds, "msgs/s")
	b.ReportMetric(float64(msgs)*float64(size)/seconds/1e6, "MB/s")
}

// BenchmarkRawWriteFsync measures what the disk itself sustains: sequential
// pwrite + fdatasync of exactly the bytes the log writes per message (one
// encoded single-record batch), one write per fsync (/1) or 64 batches per
// write+fsync (/64, the best case of group commit with 64 appenders).
func BenchmarkRawWriteFsync(b *testing.B) {
	for _, size := range benchSizes {
		for _, group := range benchAppenders {
			b.Run(fmt.Sprintf("%s/%d", size.name, group), func(b *testing.B) {
				f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE, 0o644)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				batch := encodedBatchSize([]Record{{Data: make([]byte, size.n)}})
				buf := make([]byte, batch*group)
				const fileLimit = 64 << 20 // start over like a segment roll
				var pos int64
				b.ResetTimer()
				start := time.Now()
				for done := 0; done < b.N; done += group {
					if pos+int64(len(buf)) > fileLimit {
						if err := f.Truncate(0); err != nil {
							b.Fatal(err)
						}
						pos = 0
					}
					if _, err := f.WriteAt(buf, pos); err != nil {
						b.Fatal(err)
					}
					if err := fdatasync(f); err != nil {
						b.Fatal(err)
					}
					pos += int64(len(buf))
				}
				elapsed := time.Since(start).Seconds()
				b.StopTimer()
				msgs := (b.N + group - 1) / group * group
				reportThroughput(b, msgs, size.n, elapsed)
			})
		}
	}
}
