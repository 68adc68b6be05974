package scheduler_test

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// Benchmarks of delayed messages through a whole in-process server (real
// clock, real disk), over the public gRPC API:
//
//	go test -run '^$' -bench BenchmarkSchedule -benchtime 1000x ./scheduler/   # 1M timers
//	go test -run '^$' -bench BenchmarkSchedule -benchtime 10000x -timeout 60m ./scheduler/   # 10M
//	go test -run '^$' -bench BenchmarkRelease -benchtime 1x ./scheduler/
//
// BenchmarkSchedule: one op is a batch of 1000 timers (16-byte bodies) sent
// by 8 concurrent producers; it reports timers/s and, once they are all
// pending, the process's RSS and Go heap (the whole server: etcd, storage,
// every role). Run one sub-benchmark per process (-bench .../due-...) for a
// meaningful peak-rss.

const (
	benchBatch     = 1000
	benchProducers = 8
)

func BenchmarkSchedule(b *testing.B) {
	now := time.Now()
	// The window is the current hour and the next: its messages are indexed
	// in memory (8 bytes each); later ones are only counted.
	windowEnd := now.Truncate(time.Hour).Add(2 * time.Hour)
	for _, spread := range []struct {
		name        string
		first, last time.Time
	}{
		{"due-within-the-window", now.Add(10 * time.Minute), windowEnd.Add(-time.Minute)},
		{"due-over-7-days", now.Add(10 * time.Minute), now.Add(7*24*time.Hour - time.Hour)},
	} {
		b.Run(spread.name, func(b *testing.B) {
			s := testserver.Start(b)
			q := s.CreateQueue(b, "bench", &dmsv1.Queue{DisplayName: "timers"})
			baseRSS := procStatus("VmRSS")
			span := spread.last.Sub(spread.first)
			b.ResetTimer()
			insert(b, s, q, b.N, func(i int) time.Time {
				return spread.first.Add(time.Duration(float64(span) * float64(i) / float64(b.N*benchBatch)))
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "timers/s")
			pending := waitPending(b, s, q, int64(b.N*benchBatch))
			runtime.GC()
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(pending), "pending")
			b.ReportMetric(float64(procStatus("VmRSS"))/(1<<20), "rss-MiB")
			b.ReportMetric(float64(procStatus("VmRSS")-baseRSS)/(1<<20), "rss-growth-MiB")
			b.ReportMetric(float64(procStatus("VmHWM"))/(1<<20), "peak-rss-MiB")
			b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		})
	}
}

// BenchmarkRelease measures how late timers are released while 1M are
// pending: 800k due in an hour stay in the index, and 200k due close
// together (spread over 2 s, a rate of 100k/s) are released; lateness is the
// release's publish time minus the due time, read back from the queue's
// partitions. Never early is checked for every message.
func BenchmarkRelease(b *testing.B) {
	for _, order := range []string{"sent-in-due-order", "sent-shuffled"} {
		b.Run(order, func(b *testing.B) {
			for range b.N {
				benchRelease(b, order == "sent-shuffled")
			}
		})
	}
}

func benchRelease(b *testing.B, shuffled bool) {
	b.StopTimer()
	const (
		idle   = 800_000
		burst  = 200_000
		window = 2 * time.Second
	)
	s := testserver.Start(b)
	q := s.CreateQueue(b, "bench", &dmsv1.Queue{DisplayName: "timers"})
	later := time.Now().Add(time.Hour)
	insert(b, s, q, idle/benchBatch, func(int) time.Time { return later })
	perm := make([]int, burst)
	for i := range perm {
		perm[i] = i
	}
	if shuffled {
		rand.Shuffle(len(perm), func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
	}
	// Sending 200k takes a few seconds: the burst starts after it.
	first := time.Now().Add(8 * time.Second)
	insert(b, s, q, burst/benchBatch, func(i int) time.Time {
		return first.Add(time.Duration(perm[i]) * window / burst)
	})
	if wait := time.Until(first); wait < time.Second {
		b.Fatalf("sending the burst took too long: it started %v before it was all sent", -wait+time.Second)
	}
	b.StartTimer()
	lateness := collectLateness(b, s, q, burst, first.Add(window+time.Minute))
	b.StopTimer()
	slices.Sort(lateness)
	pct := func(p float64) float64 { return float64(lateness[int(p*float64(len(lateness)-1))]) }
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(lateness[len(lateness)-1]), "max-ms")
	b.ReportMetric(float64(idle), "pending-idle")
	if lateness[0] < 0 {
		b.Fatalf("a message was released %d ms early", -lateness[0])
	}
}

// insert sends batches of 1000 timers with 16-byte bodies from several
// producers; due gives the due time of timer i. Every message carries its
// due time as an attribute.
func insert(b *testing.B, s *testserver.Server, q *dmsv1.Queue, batches int, due func(i int) time.Time) {
	b.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	errs := make(chan error, benchProducers)
	for range benchProducers {
		wg.Go(func() {
			for batch := range next {
				msgs := make([]*dmsv1.Message, benchBatch)
				for j := range msgs {
					at := due(batch*benchBatch + j)
					msgs[j] = &dmsv1.Message{
						Body:        []byte("0123456789abcdef"),
						DeliverTime: timestamppb.New(at),
						Attributes:  map[string]*dmsv1.AttributeValue{"due": {Kind: &dmsv1.AttributeValue_IntValue{IntValue: at.UnixMilli()}}},
					}
				}
				if _, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range batches {
		select {
		case next <- i:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
}

// waitPending waits until the scheduler counts want pending timers.
func waitPending(b *testing.B, s *testserver.Server, q *dmsv1.Queue, want int64) int64 {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := s.Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: q.GetName()})
		if err != nil {
			b.Fatal(err)
		}
		if got := resp.GetQueue().GetScheduledMessageCount(); got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// collectLateness reads the queue's partitions until n messages were
// released and returns publish time minus due time of each, in ms.
func collectLateness(b *testing.B, s *testserver.Server, q *dmsv1.Queue, n int, deadline time.Time) []int64 {
	b.Helper()
	storage := storagev1.NewStorageServiceClient(s.Internal)
	next := make([]int64, q.GetPartitionCount())
	var out []int64
	for len(out) < n {
		if time.Now().After(deadline) {
			st, _ := schedulerv1.NewSchedulerServiceClient(s.Internal).GetStatus(context.Background(), &schedulerv1.GetStatusRequest{})
			b.Fatalf("only %d of %d released in time; scheduler: %v", len(out), n, st)
		}
		progress := false
		for p := range q.GetPartitionCount() {
			resp, err := storage.Read(context.Background(), &storagev1.ReadRequest{Log: logid.Partition(q.GetId(), p), Offset: next[p], MaxBytes: 4 << 20})
			if err != nil {
				b.Fatal(err)
			}
			for _, r := range resp.GetRecords() {
				due := r.GetRecord().GetMessage().GetAttributes()["due"].GetIntValue()
				out = append(out, r.GetRecord().GetTimestampMs()-due)
				next[p] = r.GetOffset() + 1
				progress = true
			}
		}
		if !progress {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out
}

// procStatus returns a size in bytes from /proc/self/status: VmRSS is the
// resident set size of this process, VmHWM its peak.
func procStatus(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
