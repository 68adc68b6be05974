// Package placement is the shared view of where things live in a DMS
// cluster: the nodes (members registered under their etcd session leases),
// the cluster's fixed settings, and the placement of every unit of
// replication (replicas, leader, leader epoch, in-sync replicas, owner) that
// the controller keeps in etcd. Every role reads it through a watch-fed
// cache (Cache); the placement decisions themselves (which nodes take a new
// unit) are pure functions (plan.go).
package placement

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/storage/logid"
)

// The etcd key layout. Records are protobuf (dms.cluster.metadata.v1).
const (
	MembersPrefix   = "/dms/members/"     // {node} → Member, under the node's session lease
	ClusterInfoKey  = "/dms/cluster/info" // ClusterInfo
	PlacementPrefix = "/dms/placement/"   // {unit key} → PartitionState
	ControllerKey   = "/dms/elections/controller"
)

// Unit is the id of a unit of replication.
type Unit = *storagev1.UnitId

// PartitionUnit names the unit of a queue partition.
func PartitionUnit(queueID string, partition int32) Unit {
	return &storagev1.UnitId{Kind: storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION, QueueId: queueID, Partition: partition}
}

// DeliveryShard names a delivery shard.
func DeliveryShard(shard int32) Unit {
	return &storagev1.UnitId{Kind: storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, Shard: shard}
}

// SchedulerShard names a scheduler shard.
func SchedulerShard(shard int32) Unit {
	return &storagev1.UnitId{Kind: storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD, Shard: shard}
}

// ShardOf is the shard of a queue among n: the same on every node.
func ShardOf(queueID string, n int32) int32 {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(queueID))
	return int32(h.Sum32() % uint32(n))
}

// UnitKey is the unit's key below PlacementPrefix, also its name in logs:
// `q/{queue}/{partition}`, `d/{shard}` or `s/{shard}`.
func UnitKey(u Unit) string {
	switch u.GetKind() {
	case storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION:
		return "q/" + u.GetQueueId() + "/" + strconv.Itoa(int(u.GetPartition()))
	case storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD:
		return "d/" + strconv.Itoa(int(u.GetShard()))
	case storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD:
		return "s/" + strconv.Itoa(int(u.GetShard()))
	}
	return fmt.Sprintf("unit(kind %d)", u.GetKind())
}

// ParseUnitKey parses a UnitKey.
func ParseUnitKey(key string) (Unit, bool) {
	parts := strings.Split(key, "/")
	switch {
	case len(parts) == 3 && parts[0] == "q":
		p, err := strconv.ParseInt(parts[2], 10, 32)
		if err != nil || p < 0 {
			return nil, false
		}
		return PartitionUnit(parts[1], int32(p)), true
	case len(parts) == 2 && (parts[0] == "d" || parts[0] == "s"):
		n, err := strconv.ParseInt(parts[1], 10, 32)
		if err != nil || n < 0 {
			return nil, false
		}
		if parts[0] == "d" {
			return DeliveryShard(int32(n)), true
		}
		return SchedulerShard(int32(n)), true
	}
	return nil, false
}

// PlacementKey is the etcd key of a unit's placement.
func PlacementKey(u Unit) string { return PlacementPrefix + UnitKey(u) }

// QueuePlacementPrefix is the prefix of every partition placement of a
// queue.
func QueuePlacementPrefix(queueID string) string { return PlacementPrefix + "q/" + queueID + "/" }

// MemberKey is the registration key of a node.
func MemberKey(node string) string { return MembersPrefix + node }

// UnitOfLog returns the unit a log belongs to: a partition is its own unit;
// the other logs of a queue belong to its delivery shard (consumer group
// state, dead letters) or scheduler shard (timer buckets).
func UnitOfLog(id logid.ID, deliveryShards, schedulerShards int32) Unit {
	switch id.GetKind() {
	case storagev1.LogKind_LOG_KIND_QUEUE_PARTITION:
		return PartitionUnit(id.GetQueueId(), id.GetPartition())
	case storagev1.LogKind_LOG_KIND_TIMER_BUCKET:
		return SchedulerShard(ShardOf(id.GetQueueId(), schedulerShards))
	case storagev1.LogKind_LOG_KIND_KAFKA_GROUPS:
		return DeliveryShard(id.GetShard())
	case storagev1.LogKind_LOG_KIND_AUDIT:
		return DeliveryShard(0)
	default:
		return DeliveryShard(ShardOf(id.GetQueueId(), deliveryShards))
	}
}

// OwnerRole is the role that owns a coordination unit, "" for partitions.
func OwnerRole(u Unit) string {
	switch u.GetKind() {
	case storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD:
		return "delivery"
	case storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD:
		return "scheduler"
	}
	return ""
}
