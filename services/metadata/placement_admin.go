package metadata

import (
	"context"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
)

// DescribePlacement returns the placement of every unit, or of one queue's
// partitions.
func (e *Engine) DescribePlacement(queueID string) []*metadatav1.PartitionState {
	var out []*metadatav1.PartitionState
	for _, st := range e.placement.Units() {
		if queueID != "" && st.GetUnit().GetQueueId() != queueID {
			continue
		}
		out = append(out, st.PartitionState)
	}
	return out
}

// unitState returns a unit's placement or NOT_FOUND.
func (e *Engine) unitState(u *storagev1.UnitId) (placement.State, error) {
	st, ok := e.placement.Unit(u)
	if !ok {
		return placement.State{}, errs.Wrapf(errs.ErrResourceNameInvalid, "metadata: no unit %s", placement.UnitKey(u))
	}
	return st, nil
}

// ElectLeader makes node (or the preferred in-sync replica) the leader of a
// unit, with a new epoch. An unclean election may pick a replica that is
// not in sync, when no in-sync replica is alive; it reports what may be
// lost.
func (e *Engine) ElectLeader(ctx context.Context, u *storagev1.UnitId, node string, unclean bool) (*metadatav1.PartitionState, string, error) {
	cur, err := e.unitState(u)
	if err != nil {
		return nil, "", err
	}
	next := proto.CloneOf(cur.PartitionState)
	alive := e.placement.Alive
	discarded := ""
	switch {
	case unclean:
		if slices.ContainsFunc(cur.GetIsr(), alive) {
			return nil, "", errs.Wrapf(errs.ErrReplicationInvalid, "unit %s has in-sync replicas alive (%s); elect one of them cleanly",
				placement.UnitKey(u), strings.Join(slices.DeleteFunc(slices.Clone(cur.GetIsr()), func(n string) bool { return !alive(n) }), ", "))
		}
		if node == "" || !slices.Contains(cur.GetReplicas(), node) || !alive(node) {
			return nil, "", errs.Wrapf(errs.ErrReplicationInvalid, "an unclean election names an alive replica of %s (replicas: %s)", placement.UnitKey(u), strings.Join(cur.GetReplicas(), ", "))
		}
		next.Isr = []string{node}
		discarded = fmt.Sprintf("%s was not in sync: whatever the lost in-sync replicas (%s) acknowledged beyond %s's log end in epoch %d or earlier is discarded; "+
			"their copies are truncated to %s's when they return", node, strings.Join(cur.GetIsr(), ", "), node, cur.GetLeaderEpoch(), node)
	case node == "":
		if node = placement.ChooseLeader(cur.PartitionState, alive); node == "" {
			return nil, "", errs.Wrapf(errs.ErrNotEnoughReplicas, "no in-sync replica of %s is alive (in sync: %s); only an unclean election can bring it back",
				placement.UnitKey(u), strings.Join(cur.GetIsr(), ", "))
		}
	case !slices.Contains(cur.GetIsr(), node) || !alive(node):
		return nil, "", errs.Wrapf(errs.ErrReplicationInvalid, "%s is not an alive in-sync replica of %s (in sync: %s)", node, placement.UnitKey(u), strings.Join(cur.GetIsr(), ", "))
	}
	if node == cur.GetLeader() && !unclean {
		return cur.PartitionState, "", nil
	}
	next.Leader = node
	next.LeaderEpoch++
	if err := e.swapPlacement(ctx, cur, next); err != nil {
		return nil, "", err
	}
	e.logger.Warn("leader elected by an admin", "unit", placement.UnitKey(u), "leader", node, "epoch", next.GetLeaderEpoch(), "unclean", unclean)
	return next, discarded, nil
}

// ReassignReplicas starts moving a unit to another replica set: the new
// replicas follow until they are in sync, then the controller drops the old
// ones (moving the leadership if the leader leaves).
func (e *Engine) ReassignReplicas(ctx context.Context, u *storagev1.UnitId, replicas []string) (*metadatav1.PartitionState, error) {
	cur, err := e.unitState(u)
	if err != nil {
		return nil, err
	}
	if len(replicas) == 0 || len(replicas) > maxReplicationFactor {
		return nil, errs.Wrapf(errs.ErrReplicationInvalid, "a unit has 1 to %d replicas, got %d", maxReplicationFactor, len(replicas))
	}
	nodes := e.placement.Nodes()
	for i, r := range replicas {
		if slices.Contains(replicas[:i], r) {
			return nil, errs.Wrapf(errs.ErrReplicationInvalid, "replica %s is named twice", r)
		}
		if !slices.ContainsFunc(nodes, func(n placement.Node) bool { return n.Name == r && n.Has("storage") }) {
			return nil, errs.Wrapf(errs.ErrReplicationInvalid, "%s is not an alive node running the storage role", r)
		}
	}
	next := proto.CloneOf(cur.PartitionState)
	next.Target = slices.Clone(replicas)
	union := slices.Clone(replicas)
	for _, r := range cur.GetReplicas() {
		if !slices.Contains(union, r) {
			union = append(union, r)
		}
	}
	next.Replicas = union
	if err := e.swapPlacement(ctx, cur, next); err != nil {
		return nil, err
	}
	e.logger.Info("replica reassignment started", "unit", placement.UnitKey(u), "from", cur.GetReplicas(), "to", replicas)
	return next, nil
}

func (e *Engine) swapPlacement(ctx context.Context, cur placement.State, next *metadatav1.PartitionState) error {
	value, err := proto.Marshal(next)
	if err != nil {
		return err
	}
	key := placement.PlacementKey(next.GetUnit())
	resp, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", cur.ModRevision)).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return errs.Wrapf(errs.ErrUnavailable, "metadata: writing etcd: %v", err)
	}
	if !resp.Succeeded {
		return errs.Wrapf(errs.ErrUnavailable, "metadata: the placement of %s changed meanwhile; try again", placement.UnitKey(next.GetUnit()))
	}
	return e.placement.WaitForRevision(ctx, resp.Header.Revision)
}

// ControllerNode returns the node that holds the controller's election.
func (e *Engine) ControllerNode(ctx context.Context) string {
	resp, err := e.cli.Get(ctx, placement.ControllerKey, clientv3.WithFirstCreate()...)
	if err != nil || len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}
