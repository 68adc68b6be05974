package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// The send paths with 1 KiB messages, from many concurrent producers, all
// fsynced before the answer. Batch sizes: 1 (one message per call) and the
// DMS limit of 10 per call; the native API takes up to 1000.
func BenchmarkSend(b *testing.B) {
	s := testserver.Start(b)
	q := s.CreateQueue(b, "0123456789abcdef0123456789abcdef", &dmsv1.Queue{DisplayName: "bench"})
	body := strings.Repeat("x", 1024)
	for _, batch := range []int{1, 10, 100} {
		msgs := make([]*dmsv1.Message, batch)
		for i := range msgs {
			msgs[i] = &dmsv1.Message{Body: []byte(body)}
		}
		b.Run("grpc/batch="+itoa(batch), func(b *testing.B) {
			producer := s.Producer()
			b.SetParallelism(32)
			run(b, batch, func() error {
				_, err := producer.SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
				return err
			})
		})
	}
	for _, batch := range []int{1, 10} {
		items := make([]map[string]any, batch)
		for i := range items {
			items[i] = map[string]any{"body": body}
		}
		payload, _ := json.Marshal(map[string]any{"messages": items})
		url := "http://" + s.HTTPAddr + "/v1.0/0123456789abcdef0123456789abcdef/queues/" + q.GetId() + "/messages"
		b.Run("dms-rest/batch="+itoa(batch), func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.SetParallelism(32)
			run(b, batch, func() error {
				resp, err := client.Post(url, "application/json", bytes.NewReader(payload))
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					b.Fatalf("status %d", resp.StatusCode)
				}
				return nil
			})
		})
	}
}

func run(b *testing.B, batch int, send func() error) {
	b.SetBytes(int64(batch * 1024))
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := send(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "msgs/s")
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }
