package server

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/audit"
)

// discardOwner sends every record to another node, which drops them.
type discardOwner struct{}

func (discardOwner) AuditOwner() (int64, string, bool) { return 1, "elsewhere", false }

// BenchmarkAuditInterceptor is what the audit interceptor adds to a call
// on the calling goroutine: a call it passes (SendMessages) and a
// management call it records (CreateQueue: its parameters scrubbed and
// written as JSON, the record queued). Chaining and appending happen on
// the trail's writer, in batches (BenchmarkAuditedCalls).
func BenchmarkAuditInterceptor(b *testing.B) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s := &Server{cfg: Config{Auth: AuthConfig{Enabled: true}}, now: time.Now, NodeName: "n1", logger: logger}
	s.audit = audit.New(audit.Config{}, nil, discardOwner{}, func(context.Context, string, []*dmsv1.AuditRecord) error { return nil }, time.Now, logger)
	s.audit.Start()
	defer func() { _ = s.audit.Stop(context.Background()) }()
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: fakeAddr("192.0.2.1:5555")})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("x-request-id", "r-1", "authorization", "Bearer t"))
	intercept := s.auditUnary(true)
	handler := func(context.Context, any) (any, error) { return nil, nil }
	for _, c := range []struct {
		name   string
		method string
		req    any
	}{
		{"passed/SendMessages", dmsv1.ProducerService_SendMessages_FullMethodName,
			&dmsv1.SendMessagesRequest{Queue: "projects/p/queues/q", Messages: []*dmsv1.Message{{Body: make([]byte, 1024)}}}},
		{"recorded/CreateQueue", dmsv1.QueueService_CreateQueue_FullMethodName,
			&dmsv1.CreateQueueRequest{Parent: "projects/0123456789abcdef0123456789abcdef", Queue: &dmsv1.Queue{DisplayName: "orders", Description: "the orders of the shop"}}},
	} {
		info := &grpc.UnaryServerInfo{FullMethod: c.method}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := intercept(ctx, c.req, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	if d := s.audit.Dropped(); d > 0 {
		b.Logf("%d records dropped (queue full): the writer could not keep up with this loop", d)
	}
}

type fakeAddr string

func (a fakeAddr) Network() string { return "tcp" }
func (a fakeAddr) String() string  { return string(a) }
