package metadata

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/storage/logid"
)

// ClusterHandler serves the public ClusterService: what the placement
// cache, the member registry and the partition leaders say of the cluster.
type ClusterHandler struct {
	dmsv1.UnimplementedClusterServiceServer

	engine *Engine
	views  *Views
	cache  *catalog.Cache
}

var _ dmsv1.ClusterServiceServer = (*ClusterHandler)(nil)

// NewClusterHandler returns the handler of the public ClusterService.
func NewClusterHandler(engine *Engine, views *Views, cache *catalog.Cache) *ClusterHandler {
	return &ClusterHandler{engine: engine, views: views, cache: cache}
}

// logInfoTimeout bounds the wait for a leader's offsets: a status must
// answer while a node is down, which is when it is needed most.
const logInfoTimeout = 3 * time.Second

// GetClusterStatus implements dms.v1.ClusterService.
func (h *ClusterHandler) GetClusterStatus(ctx context.Context, req *dmsv1.GetClusterStatusRequest) (*dmsv1.GetClusterStatusResponse, error) {
	queueID := ""
	if req.GetQueue() != "" {
		q, err := h.cache.ResolveQueueName(ctx, req.GetQueue())
		if err != nil {
			return nil, err
		}
		queueID = q.GetId()
	}
	members, err := h.engine.Members(ctx)
	if err != nil {
		return nil, err
	}
	resp := &dmsv1.GetClusterStatusResponse{Controller: h.engine.ControllerNode(ctx)}
	if info := h.engine.placement.Info(); info != nil {
		resp.ClusterId = info.GetClusterId()
		resp.CreateTime = timestamppb.New(time.UnixMilli(info.GetCreateTimeMs()))
	}
	nodes := map[string]*dmsv1.ClusterNode{}
	for _, m := range members {
		nodes[m.GetNode()] = &dmsv1.ClusterNode{
			Name: m.GetNode(), Zone: m.GetZone(), Alive: true, Roles: m.GetRoles(), GrpcAddress: m.GetGrpcAddress(),
			HttpAddress: m.GetHttpAddress(), InternalGrpcAddress: m.GetInternalGrpcAddress(), KafkaAddress: m.GetKafkaAddress(),
			StartTime: timestamppb.New(time.UnixMilli(m.GetStartTimeMs())), Controller: m.GetNode() == resp.GetController(),
		}
	}
	node := func(name string) *dmsv1.ClusterNode {
		n, ok := nodes[name]
		if !ok {
			n = &dmsv1.ClusterNode{Name: name}
			nodes[name] = n
		}
		return n
	}
	byQueue := map[string][]*dmsv1.PartitionStatus{}
	for _, st := range h.engine.DescribePlacement(queueID) {
		rs := replicaSet(st, h.engine.placement.Alive)
		for _, r := range st.GetReplicas() {
			node(r).ReplicaCount++
		}
		if st.GetLeader() != "" {
			node(st.GetLeader()).LeaderCount++
		}
		if rs.GetUnderReplicated() {
			resp.UnderReplicatedCount++
		}
		if rs.GetOffline() {
			resp.OfflineCount++
		}
		u := st.GetUnit()
		switch u.GetKind() {
		case storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION:
			byQueue[u.GetQueueId()] = append(byQueue[u.GetQueueId()], &dmsv1.PartitionStatus{Partition: u.GetPartition(), Replication: rs})
		case storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD:
			kind := "delivery"
			if u.GetKind() == storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD {
				kind = "scheduler"
			}
			resp.Shards = append(resp.Shards, &dmsv1.ShardStatus{Kind: kind, Shard: u.GetShard(), Replication: rs, Owner: st.GetOwner(), OwnerEpoch: st.GetOwnerEpoch()})
		}
	}
	slices.SortFunc(resp.Shards, func(a, b *dmsv1.ShardStatus) int {
		return cmp.Or(strings.Compare(a.GetKind(), b.GetKind()), cmp.Compare(a.GetShard(), b.GetShard()))
	})
	var queues []*metadatav1.QueueRecord
	for id := range byQueue {
		q, err := h.cache.QueueByID(ctx, id)
		if err != nil || q == nil {
			continue // deleted meanwhile; its placement goes with it
		}
		queues = append(queues, q)
	}
	slices.SortFunc(queues, func(a, b *metadatav1.QueueRecord) int {
		return cmp.Or(strings.Compare(a.GetProject(), b.GetProject()), strings.Compare(a.GetDisplayName(), b.GetDisplayName()), strings.Compare(a.GetId(), b.GetId()))
	})
	for _, q := range queues {
		parts := byQueue[q.GetId()]
		slices.SortFunc(parts, func(a, b *dmsv1.PartitionStatus) int { return cmp.Compare(a.GetPartition(), b.GetPartition()) })
		logs := make([]*storagev1.LogId, len(parts))
		for i, p := range parts {
			p.Queue, p.QueueDisplayName = catalog.QueueResource(q.GetProject(), q.GetId()), q.GetDisplayName()
			logs[i] = logid.Partition(q.GetId(), p.GetPartition())
		}
		ictx, cancel := context.WithTimeout(ctx, logInfoTimeout)
		info, err := h.views.storage.GetLogInfo(ictx, &storagev1.GetLogInfoRequest{Logs: logs})
		cancel()
		for i, p := range parts {
			if err != nil {
				p.Error = err.Error()
				continue
			}
			li := info.GetLogs()[i]
			p.StartOffset, p.HighWatermark, p.SizeBytes = li.GetStartOffset(), li.GetNextOffset(), li.GetSizeBytes()
		}
		resp.Partitions = append(resp.Partitions, parts...)
	}
	for _, n := range nodes {
		resp.Nodes = append(resp.Nodes, n)
	}
	slices.SortFunc(resp.Nodes, func(a, b *dmsv1.ClusterNode) int { return strings.Compare(a.GetName(), b.GetName()) })
	return resp, nil
}

// replicaSet is what a client sees of a unit's replication.
func replicaSet(st *metadatav1.PartitionState, alive func(string) bool) *dmsv1.ReplicaSetStatus {
	minInsync := max(st.GetMinInsync(), 1)
	return &dmsv1.ReplicaSetStatus{
		Replicas: st.GetReplicas(), Leader: st.GetLeader(), LeaderEpoch: st.GetLeaderEpoch(), Isr: st.GetIsr(), MinInsync: st.GetMinInsync(),
		UnderReplicated: len(st.GetIsr()) < len(st.GetReplicas()),
		Offline:         st.GetLeader() == "" || !alive(st.GetLeader()) || int32(len(st.GetIsr())) < minInsync,
		Target:          st.GetTarget(),
	}
}
