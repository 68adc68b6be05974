package delivery_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

var backlogs int

// backlog fills a fresh queue with n messages of 1 KiB and returns a group.
func backlog(b *testing.B, s *testserver.Server, name string, partitions int32, n int) *dmsv1.ConsumerGroup {
	backlogs++ // the framework runs each sub-benchmark more than once
	q := s.CreateQueue(b, project, &dmsv1.Queue{DisplayName: name + "-" + itoa(backlogs), PartitionCount: partitions})
	body := []byte(strings.Repeat("x", 1024))
	batch := make([]*dmsv1.Message, 1000)
	for i := range batch {
		batch[i] = &dmsv1.Message{Body: body}
	}
	for sent := 0; sent < n; sent += len(batch) {
		if _, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: batch}); err != nil {
			b.Fatal(err)
		}
	}
	return s.CreateGroup(b, q, "g")
}

// BenchmarkConsume measures receive+ack of 1 KiB messages from one queue:
// unary ReceiveMessages + AckMessages with batches of 10 (the DMS limit) and
// 500, and the streaming Subscribe with range acks.
func BenchmarkConsume(b *testing.B) {
	s := testserver.Start(b)
	for _, batch := range []int{10, 500} {
		b.Run("unary/batch="+itoa(batch), func(b *testing.B) {
			g := backlog(b, s, "unary"+itoa(batch), 3, b.N+batch)
			b.SetBytes(1024)
			b.ResetTimer()
			start := time.Now()
			for done := 0; done < b.N; {
				resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: int32(batch), VisibilityTimeout: durationpb.New(300 * time.Second)})
				if err != nil {
					b.Fatal(err)
				}
				acks := make([]*dmsv1.Ack, len(resp.GetMessages()))
				for i, m := range resp.GetMessages() {
					acks[i] = &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle()}
				}
				if len(acks) > 0 {
					if _, err := s.Consumer().AckMessages(context.Background(), &dmsv1.AckMessagesRequest{Group: g.GetName(), Acks: acks}); err != nil {
						b.Fatal(err)
					}
				}
				done += len(acks)
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
	b.Run("stream", func(b *testing.B) {
		g := backlog(b, s, "stream", 1, b.N+1000)
		b.SetBytes(1024)
		b.ResetTimer()
		start := time.Now()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := s.Consumer().Subscribe(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if err := stream.Send(&dmsv1.SubscribeRequest{Start: &dmsv1.SubscribeStart{Group: g.GetName(), Credits: 4000, VisibilityTimeout: durationpb.New(300 * time.Second)}}); err != nil {
			b.Fatal(err)
		}
		for done := 0; done < b.N; {
			resp, err := stream.Recv()
			if err != nil {
				b.Fatal(err)
			}
			msgs := resp.GetMessages()
			if len(msgs) == 0 {
				continue
			}
			done += len(msgs)
			first, last := msgs[0], msgs[len(msgs)-1]
			if err := stream.Send(&dmsv1.SubscribeRequest{Credits: int32(len(msgs)), AckRanges: []*dmsv1.OffsetRange{{Partition: first.GetPartition(), First: first.GetOffset(), Last: last.GetOffset()}}}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	})
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}
