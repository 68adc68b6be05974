package storage

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/storage/logid"
)

// routeWait bounds how long a call waits for its unit to have a leader
// again (a failover) before it fails with UNAVAILABLE.
const routeWait = 10 * time.Second

// RoutedClient is the storage contract for the other roles of a cluster:
// each call goes to the leader of its log's unit, in-process when that is
// this node, with the leader epoch the placement gives. A call refused
// because the leader moved (NOT_LEADER, before anything was applied) is
// sent again to the new leader once the placement shows one; other
// failures go back to the caller, which alone knows whether repeating its
// call is safe. It sets the leader epoch of the requests it is given, which
// callers build for one call.
type RoutedClient struct {
	placement *placement.Cache
	dial      func(node string) (storagev1.StorageServiceClient, error)
}

var _ storagev1.StorageServiceClient = (*RoutedClient)(nil)

// NewRoutedClient returns a client routing by the placement; dial returns
// the storage of a node.
func NewRoutedClient(placements *placement.Cache, dial func(node string) (storagev1.StorageServiceClient, error)) *RoutedClient {
	return &RoutedClient{placement: placements, dial: dial}
}

// leader returns the client and epoch of the leader of a log's unit,
// waiting for one while the unit has none.
func (c *RoutedClient) leader(ctx context.Context, id logid.ID) (storagev1.StorageServiceClient, int64, error) {
	if err := logid.Validate(id); err != nil {
		return nil, 0, rpcstatus.Error(err)
	}
	deadline := time.NewTimer(routeWait)
	defer deadline.Stop()
	for {
		changed := c.placement.Changed()
		info := c.placement.Info()
		u := placement.UnitOfLog(id, info.GetDeliveryShards(), info.GetSchedulerShards())
		st, ok := c.placement.Unit(u)
		if ok && st.GetLeader() != "" {
			client, err := c.dial(st.GetLeader())
			if err != nil {
				return nil, 0, rpcstatus.Error(errs.Wrapf(errs.ErrUnavailable, "storage: reaching %s, the leader of %s: %v", st.GetLeader(), placement.UnitKey(u), err))
			}
			return client, st.GetLeaderEpoch(), nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			what := "has no placement"
			if ok {
				what = "has no leader: none of its in-sync replicas is alive"
			}
			return nil, 0, rpcstatus.Error(errs.Wrapf(errs.ErrUnavailable, "storage: %s (unit %s) %s", logid.Describe(id), placement.UnitKey(u), what))
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
}

// call runs fn against the leader of id's unit, again after a leader
// change.
func call[Resp any](ctx context.Context, c *RoutedClient, id logid.ID, fn func(storagev1.StorageServiceClient, int64) (*Resp, error)) (*Resp, error) {
	for {
		client, epoch, err := c.leader(ctx, id)
		if err != nil {
			return nil, err
		}
		changed := c.placement.Changed()
		resp, err := fn(client, epoch)
		if !notLeader(err) {
			return resp, err
		}
		// Wait for the placement to move, briefly: this node may have heard
		// of the change before the caller's cache did, or the reverse.
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			return nil, err
		}
	}
}

func notLeader(err error) bool {
	return err != nil && status.Code(err) == codes.Unavailable && rpcstatus.Reason(err) == errs.ErrNotLeader.Reason
}

// Append implements StorageServiceClient.
func (c *RoutedClient) Append(ctx context.Context, in *storagev1.AppendRequest, opts ...grpc.CallOption) (*storagev1.AppendResponse, error) {
	return call(ctx, c, in.GetLog(), func(s storagev1.StorageServiceClient, epoch int64) (*storagev1.AppendResponse, error) {
		in.LeaderEpoch = epoch
		return s.Append(ctx, in, opts...)
	})
}

// Read implements StorageServiceClient.
func (c *RoutedClient) Read(ctx context.Context, in *storagev1.ReadRequest, opts ...grpc.CallOption) (*storagev1.ReadResponse, error) {
	return call(ctx, c, in.GetLog(), func(s storagev1.StorageServiceClient, epoch int64) (*storagev1.ReadResponse, error) {
		in.LeaderEpoch = epoch
		return s.Read(ctx, in, opts...)
	})
}

// GetLogInfo implements StorageServiceClient: the logs are asked of their
// leaders, and the answers put back in request order.
func (c *RoutedClient) GetLogInfo(ctx context.Context, in *storagev1.GetLogInfoRequest, opts ...grpc.CallOption) (*storagev1.GetLogInfoResponse, error) {
	out := &storagev1.GetLogInfoResponse{Logs: make([]*storagev1.LogInfo, len(in.GetLogs()))}
	// Group by unit, so that a queue's partitions on one leader cost one call
	// each and shards' logs one call per shard.
	byUnit := map[string][]int{}
	var order []string
	info := c.placement.Info()
	for i, id := range in.GetLogs() {
		if err := logid.Validate(id); err != nil {
			return nil, rpcstatus.Error(err)
		}
		key := placement.UnitKey(placement.UnitOfLog(id, info.GetDeliveryShards(), info.GetSchedulerShards()))
		if _, seen := byUnit[key]; !seen {
			order = append(order, key)
		}
		byUnit[key] = append(byUnit[key], i)
	}
	for _, key := range order {
		idx := byUnit[key]
		req := &storagev1.GetLogInfoRequest{}
		for _, i := range idx {
			req.Logs = append(req.Logs, in.GetLogs()[i])
		}
		resp, err := call(ctx, c, req.GetLogs()[0], func(s storagev1.StorageServiceClient, _ int64) (*storagev1.GetLogInfoResponse, error) {
			return s.GetLogInfo(ctx, req, opts...)
		})
		if err != nil {
			return nil, err
		}
		if len(resp.GetLogs()) != len(idx) {
			return nil, errors.New("storage: a log info answer does not match its request")
		}
		for j, i := range idx {
			out.Logs[i] = resp.GetLogs()[j]
		}
	}
	return out, nil
}

// DeleteLogs implements StorageServiceClient, one call per log.
func (c *RoutedClient) DeleteLogs(ctx context.Context, in *storagev1.DeleteLogsRequest, opts ...grpc.CallOption) (*storagev1.DeleteLogsResponse, error) {
	for _, id := range in.GetLogs() {
		_, err := call(ctx, c, id, func(s storagev1.StorageServiceClient, _ int64) (*storagev1.DeleteLogsResponse, error) {
			return s.DeleteLogs(ctx, &storagev1.DeleteLogsRequest{Logs: []*storagev1.LogId{id}, WriterEpoch: in.GetWriterEpoch()}, opts...)
		})
		if err != nil {
			return nil, err
		}
	}
	return &storagev1.DeleteLogsResponse{}, nil
}

// FindOffset implements StorageServiceClient.
func (c *RoutedClient) FindOffset(ctx context.Context, in *storagev1.FindOffsetRequest, opts ...grpc.CallOption) (*storagev1.FindOffsetResponse, error) {
	return call(ctx, c, in.GetLog(), func(s storagev1.StorageServiceClient, _ int64) (*storagev1.FindOffsetResponse, error) {
		return s.FindOffset(ctx, in, opts...)
	})
}

// TrimLog implements StorageServiceClient.
func (c *RoutedClient) TrimLog(ctx context.Context, in *storagev1.TrimLogRequest, opts ...grpc.CallOption) (*storagev1.TrimLogResponse, error) {
	return call(ctx, c, in.GetLog(), func(s storagev1.StorageServiceClient, _ int64) (*storagev1.TrimLogResponse, error) {
		return s.TrimLog(ctx, in, opts...)
	})
}

// Fetch implements StorageServiceClient; followers address their leader
// directly, so it is not routed.
func (c *RoutedClient) Fetch(context.Context, *storagev1.FetchRequest, ...grpc.CallOption) (*storagev1.FetchResponse, error) {
	return nil, status.Error(codes.Unimplemented, "storage: Fetch is addressed to a leader, not routed")
}

// OffsetForLeaderEpoch implements StorageServiceClient for readers that
// check their position against a log's epoch history (Kafka consumers,
// KIP-320): asked of the unit's leader in the epoch the placement gives.
// Followers address their leader directly with their own epoch instead.
func (c *RoutedClient) OffsetForLeaderEpoch(ctx context.Context, in *storagev1.OffsetForLeaderEpochRequest, opts ...grpc.CallOption) (*storagev1.OffsetForLeaderEpochResponse, error) {
	if len(in.GetQueries()) == 0 {
		return &storagev1.OffsetForLeaderEpochResponse{}, nil
	}
	return call(ctx, c, in.GetQueries()[0].GetLog(), func(s storagev1.StorageServiceClient, epoch int64) (*storagev1.OffsetForLeaderEpochResponse, error) {
		in.LeaderEpoch = epoch
		return s.OffsetForLeaderEpoch(ctx, in, opts...)
	})
}
