//go:build linux

package server_test

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// BenchmarkTraceRecording measures what recording for message traces
// (-telemetry.record-traces: who sent each batch, who received each
// delivery) costs on the send and consume path: each op sends 100 messages
// of 1 KiB (fsynced), receives and acks them (unary, batches of 100), from
// 8 goroutines, on two servers that differ only in that flag. Besides
// msgs/s it reports the process's CPU time per message (client and server
// share the process; the client's part is the same in both), which other
// work on the machine disturbs less than wall time. Interleave the two with
// -count: go test -run x -bench TraceRecording -count 5 ./services/server/
func BenchmarkTraceRecording(b *testing.B) {
	servers := map[string]*testserver.Server{
		"on":  testserver.Start(b, testserver.WithFlags("-telemetry.record-traces=true")),
		"off": testserver.Start(b, testserver.WithFlags("-telemetry.record-traces=false")),
	}
	const batch = 100
	body := []byte(strings.Repeat("x", 1024))
	msgs := make([]*dmsv1.Message, batch)
	for i := range msgs {
		msgs[i] = &dmsv1.Message{Body: body}
	}
	for _, mode := range []string{"on", "off"} {
		s := servers[mode]
		b.Run("record="+mode, func(b *testing.B) {
			ctx := context.Background()
			backlogs++
			q := s.CreateQueue(b, metricsProject, &dmsv1.Queue{DisplayName: "trace-bench-" + itoa(backlogs), PartitionCount: 3})
			g := s.CreateGroup(b, q, "g")
			b.SetBytes(batch * 1024)
			b.SetParallelism(2) // 2 x GOMAXPROCS goroutines
			cpu0, start := cpuTime(), time.Now()
			b.RunParallel(func(pb *testing.PB) {
				producer, consumer := s.Producer(), s.Consumer()
				for pb.Next() {
					if _, err := producer.SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs}); err != nil {
						b.Error(err)
						return
					}
					resp, err := consumer.ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: batch,
						WaitTime: durationpb.New(time.Second), ConsumerId: "bench"})
					if err != nil {
						b.Error(err)
						return
					}
					acks := make([]*dmsv1.Ack, len(resp.GetMessages()))
					for i, m := range resp.GetMessages() {
						acks[i] = &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle()}
					}
					if len(acks) > 0 {
						if _, err := consumer.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: g.GetName(), Acks: acks}); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			n := float64(b.N * batch)
			b.ReportMetric(n/time.Since(start).Seconds(), "msgs/s")
			b.ReportMetric(float64(cpuTime()-cpu0)/n, "cpu-ns/msg")
		})
	}
}

var backlogs int

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
