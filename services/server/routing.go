package server

import (
	"context"

	"google.golang.org/grpc"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/rpcstatus"
)

// ownerCall calls the node owning a queue's shard of kind, again after the
// owner it reached had just lost the shard.
func ownerCall[Resp any](ctx context.Context, s *Server, kind storagev1.UnitKind, queueID string, fn func(grpc.ClientConnInterface) (*Resp, error)) (*Resp, error) {
	for attempt := 1; ; attempt++ {
		changed := s.placement.Changed()
		owner, err := s.ownerNode(ctx, kind, queueID)
		if err != nil {
			return nil, rpcstatus.Error(err)
		}
		resp, err := fn(s.nodeConn(owner))
		if !notOwnerAnymore(err) || attempt == forwardAttempts {
			return resp, err
		}
		waitForChange(ctx, changed)
	}
}

// schedulerRouter is the scheduler contract for the other roles: each call
// goes to the owner of its queue's timer shard.
type schedulerRouter struct{ s *Server }

var _ schedulerv1.SchedulerServiceClient = schedulerRouter{}

const schedulerShard = storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD

// GetStatus reports this node's own shards.
func (r schedulerRouter) GetStatus(ctx context.Context, in *schedulerv1.GetStatusRequest, opts ...grpc.CallOption) (*schedulerv1.GetStatusResponse, error) {
	return schedulerv1.NewSchedulerServiceClient(r.s.nodeConn(r.s.NodeName)).GetStatus(ctx, in, opts...)
}

func (r schedulerRouter) Schedule(ctx context.Context, in *schedulerv1.ScheduleRequest, opts ...grpc.CallOption) (*schedulerv1.ScheduleResponse, error) {
	return ownerCall(ctx, r.s, schedulerShard, in.GetQueueId(), func(cc grpc.ClientConnInterface) (*schedulerv1.ScheduleResponse, error) {
		return schedulerv1.NewSchedulerServiceClient(cc).Schedule(ctx, in, opts...)
	})
}

func (r schedulerRouter) Cancel(ctx context.Context, in *schedulerv1.CancelRequest, opts ...grpc.CallOption) (*schedulerv1.CancelResponse, error) {
	return ownerCall(ctx, r.s, schedulerShard, in.GetQueueId(), func(cc grpc.ClientConnInterface) (*schedulerv1.CancelResponse, error) {
		return schedulerv1.NewSchedulerServiceClient(cc).Cancel(ctx, in, opts...)
	})
}

func (r schedulerRouter) Reschedule(ctx context.Context, in *schedulerv1.RescheduleRequest, opts ...grpc.CallOption) (*schedulerv1.RescheduleResponse, error) {
	return ownerCall(ctx, r.s, schedulerShard, in.GetQueueId(), func(cc grpc.ClientConnInterface) (*schedulerv1.RescheduleResponse, error) {
		return schedulerv1.NewSchedulerServiceClient(cc).Reschedule(ctx, in, opts...)
	})
}

// GetQueueSchedules asks each queue's owner, and keeps the request's order.
func (r schedulerRouter) GetQueueSchedules(ctx context.Context, in *schedulerv1.GetQueueSchedulesRequest, opts ...grpc.CallOption) (*schedulerv1.GetQueueSchedulesResponse, error) {
	out := &schedulerv1.GetQueueSchedulesResponse{}
	for _, id := range in.GetQueueIds() {
		resp, err := ownerCall(ctx, r.s, schedulerShard, id, func(cc grpc.ClientConnInterface) (*schedulerv1.GetQueueSchedulesResponse, error) {
			return schedulerv1.NewSchedulerServiceClient(cc).GetQueueSchedules(ctx, &schedulerv1.GetQueueSchedulesRequest{QueueIds: []string{id}}, opts...)
		})
		if err != nil {
			return nil, err
		}
		out.Queues = append(out.Queues, resp.GetQueues()...)
	}
	return out, nil
}

// deliveryRouter is the delivery contract for the other roles: each call
// goes to the owner of its queue's delivery shard.
type deliveryRouter struct{ s *Server }

var _ deliveryv1.DeliveryServiceClient = deliveryRouter{}

func (r deliveryRouter) GetGroupStats(ctx context.Context, in *deliveryv1.GetGroupStatsRequest, opts ...grpc.CallOption) (*deliveryv1.GetGroupStatsResponse, error) {
	return ownerCall(ctx, r.s, storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, in.GetQueueId(), func(cc grpc.ClientConnInterface) (*deliveryv1.GetGroupStatsResponse, error) {
		return deliveryv1.NewDeliveryServiceClient(cc).GetGroupStats(ctx, in, opts...)
	})
}
