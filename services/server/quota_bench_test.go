package server_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// BenchmarkQuotaIsolation measures what one tenant's flood does to
// another's send latency: project B sends one 1 KiB message at a time
// while project A sends batches of 100 from 16 producers as fast as it
// can (sending a refused batch again at once), without a quota and then held to 2000 messages/s by its
// send_messages_per_second. B's p50 and p99 are reported for each case,
// with A's admitted rate. Run with -benchtime 2000x or so.
func BenchmarkQuotaIsolation(b *testing.B) {
	s := testserver.Start(b)
	ctx := context.Background()
	projectA, projectB := "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	qa := s.CreateQueue(b, projectA, &dmsv1.Queue{DisplayName: "flood"})
	qb := s.CreateQueue(b, projectB, &dmsv1.Queue{DisplayName: "victim"})
	body := []byte(strings.Repeat("x", 1024))
	batch := make([]*dmsv1.Message, 100)
	for i := range batch {
		batch[i] = &dmsv1.Message{Body: body}
	}
	for _, c := range []struct {
		name  string
		flood bool
		rate  int64
	}{{"alone", false, 0}, {"neighbour=unlimited", true, 0}, {"neighbour=2000msgs/s", true, 2000}} {
		b.Run(c.name, func(b *testing.B) {
			if _, err := s.Queues().UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + projectA,
				Quotas: &dmsv1.ProjectQuotas{SendMessagesPerSecond: c.rate}}); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var admitted atomic.Int64
			if c.flood {
				for range 16 {
					wg.Go(func() {
						for {
							select {
							case <-stop:
								return
							default:
							}
							// Refused sends are sent again at once: the
							// server holds refusals, not the client.
							if _, err := s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: qa.GetName(), Messages: batch}); err == nil {
								admitted.Add(int64(len(batch)))
							}
						}
					})
				}
			}
			lat := make([]time.Duration, 0, b.N)
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if _, err := s.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: qb.GetName(), Messages: batch[:1]}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			elapsed := time.Since(start)
			close(stop)
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "B-p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "B-p99-ms")
			b.ReportMetric(float64(admitted.Load())/elapsed.Seconds(), "A-msgs/s")
		})
	}
}
