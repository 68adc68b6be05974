package server

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// ackThrough sends an ack over a real gRPC connection to addr and returns
// the error the transport gives.
func ackThrough(t *testing.T, addr string) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = dmsv1.NewConsumerServiceClient(conn).AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: "g"})
	return err
}

// blockingConsumer holds every ack until the test cuts the connection.
type blockingConsumer struct {
	dmsv1.UnimplementedConsumerServiceServer
	took chan struct{}
}

func (b *blockingConsumer) AckMessages(ctx context.Context, _ *dmsv1.AckMessagesRequest) (*dmsv1.AckMessagesResponse, error) {
	close(b.took)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestForwardRetriesOnlyCallsNeverApplied: a forwarded call goes to the
// new owner only when the old one refused it (NOT_LEADER) or could not be
// reached; when the connection breaks during the call, the owner may have
// applied it, and it is not sent again.
func TestForwardRetriesOnlyCallsNeverApplied(t *testing.T) {
	// An owner that took the call and died during it: a real gRPC server
	// whose handler has the call when the server's connections are cut.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dying := grpc.NewServer()
	took := make(chan struct{})
	dmsv1.RegisterConsumerServiceServer(dying, &blockingConsumer{took: took})
	go func() { _ = dying.Serve(lis) }()
	go func() { <-took; dying.Stop() }()
	midCall := ackThrough(t, lis.Addr().String())
	t.Logf("mid-call error: %v", midCall)

	// An owner that is gone: nothing listens on its port.
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	_ = gone.Close()
	refused := ackThrough(t, goneAddr)
	t.Logf("unreachable error: %v", refused)

	for _, tc := range []struct {
		name  string
		err   error
		retry bool
	}{
		{"owner refused: not the owner any more", rpcstatus.Error(errs.Wrapf(errs.ErrNotLeader, "not the owner")), true},
		{"owner unreachable: connection refused", refused, true},
		{"owner went away during the call", midCall, false},
		{"owner answered another error", rpcstatus.Error(errs.Wrapf(errs.ErrReceiptHandleExpired, "expired")), false},
		{"no error", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.err != nil && status.Code(tc.err) == codes.OK {
				t.Fatalf("the setup gave no error")
			}
			if got := notOwnerAnymore(tc.err); got != tc.retry {
				t.Errorf("notOwnerAnymore(%v) = %v, want %v", tc.err, got, tc.retry)
			}
		})
	}
}
