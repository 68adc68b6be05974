package storage

import (
	"context"

	"google.golang.org/grpc"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/rpcstatus"
)

// LocalClient returns the StorageService contract served by this process's
// handler without gRPC in between: the roles that share a process with the
// storage role append and read records without encoding them twice per hop.
func LocalClient(h *Handler) storagev1.StorageServiceClient { return localClient{h} }

type localClient struct{ h *Handler }

func (l localClient) Append(ctx context.Context, in *storagev1.AppendRequest, _ ...grpc.CallOption) (*storagev1.AppendResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.Append)
}

func (l localClient) Read(ctx context.Context, in *storagev1.ReadRequest, _ ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.Read)
}

func (l localClient) GetLogInfo(ctx context.Context, in *storagev1.GetLogInfoRequest, _ ...grpc.CallOption) (*storagev1.GetLogInfoResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.GetLogInfo)
}

func (l localClient) DeleteLogs(ctx context.Context, in *storagev1.DeleteLogsRequest, _ ...grpc.CallOption) (*storagev1.DeleteLogsResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.DeleteLogs)
}

func (l localClient) FindOffset(ctx context.Context, in *storagev1.FindOffsetRequest, _ ...grpc.CallOption) (*storagev1.FindOffsetResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.FindOffset)
}

func (l localClient) TrimLog(ctx context.Context, in *storagev1.TrimLogRequest, _ ...grpc.CallOption) (*storagev1.TrimLogResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.TrimLog)
}

func (l localClient) Fetch(ctx context.Context, in *storagev1.FetchRequest, _ ...grpc.CallOption) (*storagev1.FetchResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.Fetch)
}

func (l localClient) OffsetForLeaderEpoch(ctx context.Context, in *storagev1.OffsetForLeaderEpochRequest, _ ...grpc.CallOption) (*storagev1.OffsetForLeaderEpochResponse, error) {
	return rpcstatus.Local(ctx, in, l.h.OffsetForLeaderEpoch)
}
