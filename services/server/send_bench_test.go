package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// The send paths with 1 KiB messages, from many concurrent producers, all
// fsynced before the answer. Batch sizes: 1 (one message per call) and the
// DMS limit of 10 per call; the native API takes up to 1000.
func BenchmarkSend(b *testing.B) {
	s := testserver.Start(b)
	benchmarkSend(b, s, context.Background(), nil)
}

// BenchmarkSendAuth is BenchmarkSend with authentication on: gRPC calls
// carry a session token as authorization: Bearer, DMS REST calls the same
// token as X-Auth-Token (the /auth=aksk cases sign each request with an
// access key instead), so that each call is authenticated and authorized.
// Run both in one go test -bench run to compare on the same machine state.
func BenchmarkSendAuth(b *testing.B) {
	b.Setenv("DMS_ADMIN_PASSWORD", "bench-admin-password")
	s := testserver.Start(b, testserver.WithFlags("-auth.enabled"))
	body := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":"bench-admin-password","domain":{"name":"Default"}}}},"scope":{"project":{"id":"0123456789abcdef0123456789abcdef"}}}}`
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
	token := resp.Header.Get("X-Subject-Token")
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
	benchmarkSend(b, s, ctx, map[string]string{"X-Auth-Token": token})
}

// BenchmarkSendEncrypted is BenchmarkSend with encryption at rest on: the
// project's batches are sealed with its data key (AES-256-GCM), wrapped by
// the master key of -storage.encryption-key-file. Run it with BenchmarkSend
// in one go test -bench run to compare.
func BenchmarkSendEncrypted(b *testing.B) {
	keyFile := filepath.Join(b.TempDir(), "keys")
	if err := os.WriteFile(keyFile, []byte("1:"+base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	s := testserver.Start(b, testserver.WithFlags("-storage.encryption-key-file", keyFile))
	benchmarkSend(b, s, context.Background(), nil)
}

func benchmarkSend(b *testing.B, s *testserver.Server, ctx context.Context, headers map[string]string) {
	q, err := s.Queues().CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/0123456789abcdef0123456789abcdef", Queue: &dmsv1.Queue{DisplayName: "bench"}})
	if err != nil {
		b.Fatal(err)
	}
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
				_, err := producer.SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetQueue().GetName(), Messages: msgs})
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
		url := "http://" + s.HTTPAddr + "/v1.0/0123456789abcdef0123456789abcdef/queues/" + q.GetQueue().GetId() + "/messages"
		b.Run("dms-rest/batch="+itoa(batch), func(b *testing.B) {
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			b.SetParallelism(32)
			run(b, batch, func() error {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/json")
				for k, v := range headers {
					req.Header.Set(k, v)
				}
				resp, err := client.Do(req)
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
