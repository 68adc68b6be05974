// Package catalog is the shared view of the DMS catalog (queues and consumer
// groups) that the metadata role keeps in etcd: the key layout, resource
// names and validation rules, and a cache that every role fills from an etcd
// watch instead of asking per request.
package catalog

import (
	"fmt"
	"time"
)

// The etcd key layout. Records are protobuf (dms.cluster.metadata.v1).
const (
	Prefix           = "/dms/catalog/"
	queuePrefix      = Prefix + "queues/"      // {queue_id} → QueueRecord
	queueNamePrefix  = Prefix + "queue-names/" // {project}/{display_name} → queue_id
	queueCountPrefix = Prefix + "queue-count/" // {project} → decimal count (quota guard)
	groupPrefix      = Prefix + "groups/"      // {queue_id}/{group_id} → GroupRecord
	groupNamePrefix  = Prefix + "group-names/" // {queue_id}/{display_name} → group_id
	groupCountPrefix = Prefix + "group-count/" // {queue_id} → decimal count (quota guard)
	quotaPrefix      = Prefix + "quotas/"      // {project} → dms.v1.ProjectQuotas, the project's own quotas
	// Tombstones: written in the transaction that deletes a queue or group
	// (with a lease of TombstoneTTL), so that a storage node that was down
	// meanwhile deletes the data on positive evidence, never because a
	// lookup found nothing.
	deletedQueuePrefix = Prefix + "deleted-queues/" // {queue_id} → deletion time (Unix ms)
	deletedGroupPrefix = Prefix + "deleted-groups/" // {queue_id}/{group_id} → deletion time (Unix ms)
	ReceiptKeyKey      = "/dms/secrets/receipt-key"
	ClusterSecretKey   = "/dms/secrets/cluster-secret" // the internal listener's secret when no -cluster.secret-file is given
	ElectionPrefix     = "/dms/elections/"
	// TimerBucketsPrefix lists the scheduler's timer bucket logs:
	// {queue_id}/{hour} → empty. Storage has no listing of logs, so the
	// scheduler registers a bucket here before its first append and finds
	// its buckets here when it takes over a shard.
	TimerBucketsPrefix = "/dms/scheduler/buckets/"
)

// TimerBucketKey registers the timer bucket of a queue and hour.
func TimerBucketKey(queueID string, hour int64) string {
	return fmt.Sprintf("%s%s/%d", TimerBucketsPrefix, queueID, hour)
}

// TimerBucketsOfQueuePrefix is the prefix of every timer bucket of a queue.
func TimerBucketsOfQueuePrefix(queueID string) string { return TimerBucketsPrefix + queueID + "/" }

// TombstoneTTL is how long the catalog remembers a deleted queue or group;
// a storage node down for longer keeps (and reports) the data instead.
const TombstoneTTL = 30 * 24 * time.Hour

// DeletedQueueKey is the tombstone of a deleted queue.
func DeletedQueueKey(queueID string) string { return deletedQueuePrefix + queueID }

// DeletedGroupKey is the tombstone of a deleted consumer group.
func DeletedGroupKey(queueID, groupID string) string {
	return deletedGroupPrefix + queueID + "/" + groupID
}

// QueueKey is the key of a queue record.
func QueueKey(queueID string) string { return queuePrefix + queueID }

// QueueNameKey is the key that reserves a queue display name in a project.
func QueueNameKey(project, name string) string { return queueNamePrefix + project + "/" + name }

// QueueCountKey holds the number of queues of a project.
func QueueCountKey(project string) string { return queueCountPrefix + project }

// QuotaKey is the key of a project's own quotas.
func QuotaKey(project string) string { return quotaPrefix + project }

// GroupKey is the key of a group record.
func GroupKey(queueID, groupID string) string { return groupPrefix + queueID + "/" + groupID }

// GroupsOfQueuePrefix is the prefix of every group record of a queue.
func GroupsOfQueuePrefix(queueID string) string { return groupPrefix + queueID + "/" }

// GroupNameKey reserves a group display name on a queue.
func GroupNameKey(queueID, name string) string { return groupNamePrefix + queueID + "/" + name }

// GroupNamesOfQueuePrefix is the prefix of every group name of a queue.
func GroupNamesOfQueuePrefix(queueID string) string { return groupNamePrefix + queueID + "/" }

// GroupCountKey holds the number of groups of a queue.
func GroupCountKey(queueID string) string { return groupCountPrefix + queueID }
