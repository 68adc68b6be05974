package ingest

import (
	"context"

	"google.golang.org/grpc"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	"github.com/opendms/dms/services/rpcstatus"
)

// LocalClient returns the IngestService contract served by this process's
// handler without gRPC in between, for the roles that share a process with
// the ingest role (the scheduler publishes released messages through it).
func LocalClient(h *Handler) ingestv1.IngestServiceClient { return localClient{h} }

type localClient struct{ h *Handler }

func (l localClient) Publish(ctx context.Context, in *ingestv1.PublishRequest, _ ...grpc.CallOption) (*ingestv1.PublishResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.Publish)
}
