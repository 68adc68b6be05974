package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
	"github.com/opendms/dms/services/tlsreload/tlstest"
)

// BenchmarkTLS compares a server with TLS on its public listeners (ECDSA
// P-256 certificate) with one without, in the same run: a new connection
// (TCP + TLS handshake + a first gRPC call), and sends of 1 KiB messages
// over gRPC and the DMS REST API from 32 concurrent producers.
func BenchmarkTLS(b *testing.B) {
	ca := tlstest.NewCA(b, "bench CA")
	files := tlstest.Write(b, b.TempDir(), ca.Issue(b, "dmsd", "127.0.0.1"), ca)
	servers := []struct {
		name      string
		s         *testserver.Server
		creds     credentials.TransportCredentials
		scheme    string
		transport *http.Transport
	}{
		{"off", testserver.Start(b), insecure.NewCredentials(), "http", &http.Transport{MaxIdleConnsPerHost: 64}},
		{"on", testserver.Start(b, tlsFlags(files)), credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}), "https",
			&http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}},
	}
	parent := "projects/" + server.DefaultProject
	for _, srv := range servers {
		b.Run("connect/tls="+srv.name, func(b *testing.B) {
			for b.Loop() {
				cc, err := grpc.NewClient(srv.s.GRPCAddr, grpc.WithTransportCredentials(srv.creds))
				if err != nil {
					b.Fatal(err)
				}
				if _, err := dmsv1.NewQueueServiceClient(cc).ListQueues(context.Background(), &dmsv1.ListQueuesRequest{Parent: parent}); err != nil {
					b.Fatal(err)
				}
				_ = cc.Close()
			}
		})
		b.Run("handshake/tls="+srv.name, func(b *testing.B) {
			if srv.name == "off" {
				b.Skip("no handshake without TLS")
			}
			cfg := &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"h2"}}
			for b.Loop() {
				c, err := tls.Dial("tcp", srv.s.GRPCAddr, cfg)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
	body := strings.Repeat("x", 1024)
	for _, batch := range []int{1, 100} {
		msgs := make([]*dmsv1.Message, batch)
		for i := range msgs {
			msgs[i] = &dmsv1.Message{Body: []byte(body)}
		}
		for _, srv := range servers {
			cc, err := grpc.NewClient(srv.s.GRPCAddr, grpc.WithTransportCredentials(srv.creds))
			if err != nil {
				b.Fatal(err)
			}
			defer cc.Close()
			q, err := dmsv1.NewQueueServiceClient(cc).CreateQueue(context.Background(), &dmsv1.CreateQueueRequest{Parent: parent, Queue: &dmsv1.Queue{DisplayName: "bench-" + itoa(batch)}})
			if err != nil {
				b.Fatal(err)
			}
			producer := dmsv1.NewProducerServiceClient(cc)
			b.Run("grpc/batch="+itoa(batch)+"/tls="+srv.name, func(b *testing.B) {
				b.SetParallelism(32)
				run(b, batch, func() error {
					_, err := producer.SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetQueue().GetName(), Messages: msgs})
					return err
				})
			})
			if batch > 10 {
				continue
			}
			url := srv.scheme + "://" + srv.s.HTTPAddr + "/v1.0/" + server.DefaultProject + "/queues/" + q.GetQueue().GetId() + "/messages"
			payload := []byte(`{"messages":[{"body":"` + body + `"}]}`)
			client := &http.Client{Transport: srv.transport}
			b.Run("dms-rest/batch=1/tls="+srv.name, func(b *testing.B) {
				b.SetParallelism(32)
				run(b, 1, func() error {
					resp, err := client.Post(url, "application/json", bytes.NewReader(payload))
					if err != nil {
						return err
					}
					// Read to the end, so that the connection is used again.
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						b.Fatalf("status %d", resp.StatusCode)
					}
					return nil
				})
			})
		}
	}
}
