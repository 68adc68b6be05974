package server

import (
	"context"
	"time"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
)

// ownership answers, from the placement, which node owns the delivery or
// scheduler shard of a queue, and in which epoch.
type ownership struct{ s *Server }

func (o ownership) owner(kind storagev1.UnitKind, queueID string) (epoch int64, owner string, mine bool) {
	info := o.s.placement.Info()
	n := info.GetDeliveryShards()
	if kind == storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD {
		n = info.GetSchedulerShards()
	}
	st, ok := o.s.placement.Unit(&storagev1.UnitId{Kind: kind, Shard: placement.ShardOf(queueID, n)})
	if !ok {
		return 0, "", false
	}
	return st.GetOwnerEpoch(), st.GetOwner(), st.GetOwner() == o.s.NodeName
}

// DeliveryOwner implements delivery.Ownership.
func (o ownership) DeliveryOwner(queueID string) (int64, string, bool) {
	return o.owner(storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, queueID)
}

// SchedulerShards implements scheduler.Ownership.
func (o ownership) SchedulerShards() int { return int(o.s.placement.Info().GetSchedulerShards()) }

// SchedulerShardOwner implements scheduler.Ownership.
func (o ownership) SchedulerShardOwner(n int) (int64, bool) {
	st, ok := o.s.placement.Unit(placement.SchedulerShard(int32(n)))
	return st.GetOwnerEpoch(), ok && st.GetOwner() == o.s.NodeName
}

// Changed implements scheduler.Ownership.
func (o ownership) Changed() <-chan struct{} { return o.s.placement.Changed() }

// ownerNode returns the node owning a queue's shard of kind, waiting a
// little while the shard has no owner (a failover, or a cluster starting).
func (s *Server) ownerNode(ctx context.Context, kind storagev1.UnitKind, queueID string) (string, error) {
	deadline := time.NewTimer(routeWait)
	defer deadline.Stop()
	for {
		changed := s.placement.Changed()
		if _, owner, _ := (ownership{s}).owner(kind, queueID); owner != "" && s.placement.Alive(owner) {
			return owner, nil
		}
		select {
		case <-changed:
		case <-deadline.C:
			return "", errs.Wrapf(errs.ErrUnavailable, "no node owns the %s shard of queue %s yet", placement.OwnerRole(&storagev1.UnitId{Kind: kind}), queueID)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// routeWait bounds the wait for a shard to have an owner.
const routeWait = 10 * time.Second
