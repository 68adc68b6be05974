package partitionlog

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type benchSize struct {
	name string
	n    int
}

var (
	benchSizes     = []benchSize{{"100B", 100}, {"1KiB", 1 << 10}, {"16KiB", 16 << 10}}
	benchAppenders = []int{1, 64}
)

func BenchmarkAppendSync(b *testing.B)  { benchmarkAppend(b, DurabilitySync, nil, benchSizes) }
func BenchmarkAppendAsync(b *testing.B) { benchmarkAppend(b, DurabilityAsync, nil, benchSizes) }

// BenchmarkAppendEncrypted is BenchmarkAppend{Sync,Async}/1KiB with
// encryption at rest on; compare with those for its cost.
func BenchmarkAppendEncrypted(b *testing.B) {
	keys := mustKeyring(b, testKey(1, 1))
	for _, d := range []Durability{DurabilitySync, DurabilityAsync} {
		b.Run(d.String(), func(b *testing.B) { benchmarkAppend(b, d, keys, benchSizes[1:2]) })
	}
}

// benchmarkAppend appends b.N single-record batches from a fixed number of
// concurrent appenders. Sub-benchmarks are <record size>/<appenders>.
//
// Each one also measures the disk's own sequential write+fsync rate for the
// same bytes, with as many batches per write+fsync as there are appenders
// (the best case of group commit), and reports it (raw-MB/s) and the log's
// rate relative to it (x-raw). The disk may be shared and its speed drifts,
// so the appends run in rounds, each followed by a raw phase as long as it:
// both rates are taken over the same stretches of time.
func benchmarkAppend(b *testing.B, d Durability, keys *Keyring, sizes []benchSize) {
	for _, size := range sizes {
		for _, appenders := range benchAppenders {
			b.Run(fmt.Sprintf("%s/%d", size.name, appenders), func(b *testing.B) {
				l := openTest(b, Options{Durability: d, Keys: keys})
				data := make([]byte, size.n)
				batch := encodedBatchSize([]Record{{Data: data}})
				if keys != nil {
					batch += encryptionOverhead
				}
				raw := newRawDisk(b, batch, appenders)
				ctx := context.Background()
				syncsBefore := l.syncs.Load()
				rounds := max(1, min(10, b.N/(10*appenders)))
				var elapsed time.Duration
				b.ResetTimer()
				for r := range rounds {
					n := b.N/rounds + btoi(r < b.N%rounds)
					var issued atomic.Int64
					start := time.Now()
					var wg sync.WaitGroup
					for range appenders {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for issued.Add(1) <= int64(n) {
								if _, err := l.Append(ctx, []Record{{Timestamp: 1, Data: data}}); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					took := time.Since(start)
					elapsed += took
					b.StopTimer()
					raw.run(max(took, 5*time.Millisecond))
					b.StartTimer()
				}
				b.StopTimer()
				reportThroughput(b, b.N, size.n, elapsed.Seconds())
				b.ReportMetric(float64(l.syncs.Load()-syncsBefore)/float64(b.N), "fsyncs/op")
				rawMsgs := raw.rate() / float64(batch)
				b.ReportMetric(rawMsgs*float64(size.n)/1e6, "raw-MB/s")
				b.ReportMetric(float64(b.N)/elapsed.Seconds()/rawMsgs, "x-raw")
			})
		}
	}
}

func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

func reportThroughput(b *testing.B, msgs, size int, seconds float64) {
	b.ReportMetric(float64(msgs)/seconds, "msgs/s")
	b.ReportMetric(float64(msgs)*float64(size)/seconds/1e6, "MB/s")
}

// rawDisk does sequential pwrite + fdatasync of group batches of batchBytes
// each, in a file that starts over every 64 MiB like a rolling segment, and
// keeps the totals.
type rawDisk struct {
	b        *testing.B
	f        *os.File
	buf      []byte
	pos      int64
	written  int64
	duration time.Duration
}

func newRawDisk(b *testing.B, batchBytes, group int) *rawDisk {
	f, err := os.OpenFile(filepath.Join(b.TempDir(), "raw"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return &rawDisk{b: b, f: f, buf: make([]byte, batchBytes*group)}
}

// run writes and fsyncs for about d (at least 5 times).
func (r *rawDisk) run(d time.Duration) {
	const fileLimit = 64 << 20
	start := time.Now()
	for n := 0; n < 5 || time.Since(start) < d; n++ {
		if r.pos+int64(len(r.buf)) > fileLimit {
			if err := r.f.Truncate(0); err != nil {
				r.b.Fatal(err)
			}
			r.pos = 0
		}
		if _, err := r.f.WriteAt(r.buf, r.pos); err != nil {
			r.b.Fatal(err)
		}
		if err := fdatasync(r.f); err != nil {
			r.b.Fatal(err)
		}
		r.pos += int64(len(r.buf))
		r.written += int64(len(r.buf))
	}
	r.duration += time.Since(start)
}

// rate returns the bytes per second over every run.
func (r *rawDisk) rate() float64 { return float64(r.written) / r.duration.Seconds() }

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

// BenchmarkEncodeBatch isolates the CPU cost of encoding (and sealing) one
// single-record batch, which the disk-bound append benchmarks hide.
func BenchmarkEncodeBatch(b *testing.B) {
	keys := mustKeyring(b, testKey(1, 1))
	l := &Log{}
	l.keys.Store(keys)
	if err := l.seedNonces(); err != nil {
		b.Fatal(err)
	}
	for _, enc := range []bool{false, true} {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("%s/%s", map[bool]string{false: "plain", true: "encrypted"}[enc], size.name), func(b *testing.B) {
				recs := []Record{{Timestamp: 1, Data: make([]byte, size.n)}}
				n := encodedBatchSize(recs)
				if enc {
					n += encryptionOverhead
				}
				buf := make([]byte, n)
				b.SetBytes(int64(size.n))
				for b.Loop() {
					if enc {
						encodeEncryptedBatch(buf, recs, keys.active, l.nextNonce())
					} else {
						encodeBatch(buf, recs)
					}
				}
			})
		}
	}
}

// envInt reads a benchmark size from the environment.
func envInt(b *testing.B, name string, def int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		return n
	}
	return def
}

// fillLog appends records of recSize bytes, perBatch to a batch, until until
// reports true, and returns the number of records appended.
func fillLog(b *testing.B, l *Log, recSize, perBatch int, until func() bool) int64 {
	recs := make([]Record, perBatch)
	data := make([]byte, recSize)
	var n int64
	for !until() {
		for i := range recs {
			recs[i] = Record{Timestamp: 1_700_000_000_000 + n/1000, Data: data}
		}
		if _, err := l.Append(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
		n += int64(perBatch)
	}
	return n
}

// BenchmarkReadCold reads a backlog (PARTITIONLOG_BENCH_BACKLOG_MB, default
// 256 MiB, of 1 KiB records in batches of 16) from start to end after
// evicting its files from the page cache; resident-% says how much of them
// the kernel still held when the read started.
func BenchmarkReadCold(b *testing.B) {
	backlog := int64(envInt(b, "PARTITIONLOG_BENCH_BACKLOG_MB", 256)) << 20
	for _, enc := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(b *testing.B) {
			opts := Options{Dir: b.TempDir(), Durability: DurabilityAsync, Logger: quietLogger()}
			if enc {
				opts.Keys = mustKeyring(b, testKey(1, 1))
			}
			l, err := Open(opts)
			if err != nil {
				b.Fatal(err)
			}
			msgs := fillLog(b, l, 1<<10, 16, func() bool { return l.Size() >= backlog })
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
			var resident float64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				l, err := Open(opts) // recovery reads the last segment: evict after
				if err != nil {
					b.Fatal(err)
				}
				r, err := evictFromPageCache(opts.Dir)
				if err != nil {
					b.Logf("cannot evict the backlog from the page cache, reading it warm: %v", err)
				}
				resident += r
				b.StartTimer()
				var read int64
				for from := int64(0); from < l.NextOffset(); {
					es, err := l.Read(from, 1<<20)
					if err != nil {
						b.Fatal(err)
					}
					read += int64(len(es))
					from = es[len(es)-1].Offset + 1
				}
				b.StopTimer()
				if read != msgs {
					b.Fatalf("read %d records, want %d", read, msgs)
				}
				l.Close()
				b.StartTimer()
			}
			b.StopTimer()
			perOp := b.Elapsed().Seconds() / float64(b.N)
			reportThroughput(b, int(msgs), 1<<10, perOp)
			b.ReportMetric(100*resident/float64(b.N), "resident-%")
		})
	}
}

// BenchmarkRecovery times Open after a crash (a torn batch at the end of the
// last segment) for logs of different total size and unflushed tail (the
// size of the last segment, which is all that recovery scans), with the
// files in the page cache (process crash) and evicted (machine crash). Total
// data is PARTITIONLOG_BENCH_RECOVERY_GB (default 2) GiB for the large logs.
func BenchmarkRecovery(b *testing.B) {
	large := int64(envInt(b, "PARTITIONLOG_BENCH_RECOVERY_GB", 2)) << 30
	const bigTail, smallTail = 60 << 20, 1 << 20
	build := func(sealed int64) Options {
		opts := Options{Dir: b.TempDir(), Durability: DurabilityAsync, Logger: quietLogger()}
		l, err := Open(opts)
		if err != nil {
			b.Fatal(err)
		}
		fillLog(b, l, 1<<10, 64, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			var sealedBytes int64
			for _, s := range l.segs[:len(l.segs)-1] {
				sealedBytes += s.size
			}
			return sealedBytes >= sealed && l.segs[len(l.segs)-1].size >= bigTail
		})
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		return opts
	}
	largeLog, smallLog := build(large), build(0)
	activeOf := func(opts Options) string {
		segs := segmentLogs(b, opts.Dir)
		return segs[len(segs)-1]
	}
	run := func(name string, opts Options, cold bool) {
		b.Run(name+map[bool]string{false: "/warm", true: "/cold"}[cold], func(b *testing.B) {
			var total, tail int64
			for _, p := range segmentLogs(b, opts.Dir) {
				fi, err := os.Stat(p)
				if err != nil {
					b.Fatal(err)
				}
				total, tail = total+fi.Size(), fi.Size()
			}
			var resident float64
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				tornBatch(b, activeOf(opts))
				if cold {
					r, err := evictFromPageCache(opts.Dir)
					if err != nil {
						b.Logf("cannot evict the log from the page cache: %v", err)
					}
					resident += r
				}
				b.StartTimer()
				l, err := Open(opts)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				l.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(total)/(1<<20), "data-MiB")
			b.ReportMetric(float64(tail)/(1<<20), "tail-MiB")
			if cold {
				b.ReportMetric(100*resident/float64(b.N), "resident-%")
			}
		})
	}
	for _, cold := range []bool{false, true} {
		run("data=large/tail=60MiB", largeLog, cold)
		run("data=60MiB/tail=60MiB", smallLog, cold)
	}
	for _, opts := range []Options{largeLog, smallLog} {
		if err := os.Truncate(activeOf(opts), smallTail); err != nil {
			b.Fatal(err)
		}
	}
	for _, cold := range []bool{false, true} {
		run("data=large/tail=1MiB", largeLog, cold)
		run("data=1MiB/tail=1MiB", smallLog, cold)
	}
}

// tornBatch appends the beginning of a batch to a segment file, as a crash
// in the middle of a write leaves it.
func tornBatch(b *testing.B, path string) {
	recs := []Record{{Data: make([]byte, 4096)}}
	buf := make([]byte, encodedBatchSize(recs))
	encodeBatch(buf, recs)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(buf[:len(buf)/2]); err != nil {
		b.Fatal(err)
	}
}
