// Package catalog is the shared view of the DMS catalog (queues and consumer
// groups) that the metadata role keeps in etcd: the key layout, resource
// names and validation rules, and a cache that every role fills from an etcd
// watch instead of asking per request.
package catalog

import (
	"fmt"
	"strings"
)

// The etcd key layout. Records are protobuf (dms.metadata.v1).
const (
	Prefix           = "/dms/catalog/"
	queuePrefix      = Prefix + "queues/"      // {queue_id} → QueueRecord
	queueNamePrefix  = Prefix + "queue-names/" // {project}/{display_name} → queue_id
	queueCountPrefix = Prefix + "queue-count/" // {project} → decimal count (quota guard)
	groupPrefix      = Prefix + "groups/"      // {queue_id}/{group_id} → GroupRecord
	groupNamePrefix  = Prefix + "group-names/" // {queue_id}/{display_name} → group_id
	groupCountPrefix = Prefix + "group-count/" // {queue_id} → decimal count (quota guard)
	MembersPrefix    = "/dms/members/"
	ReceiptKeyKey    = "/dms/secrets/receipt-key"
	ElectionPrefix   = "/dms/elections/"
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

// QueueKey is the key of a queue record.
func QueueKey(queueID string) string { return queuePrefix + queueID }

// QueueNameKey is the key that reserves a queue display name in a project.
func QueueNameKey(project, name string) string { return queueNamePrefix + project + "/" + name }

// QueueCountKey holds the number of queues of a project.
func QueueCountKey(project string) string { return queueCountPrefix + project }

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

// PartitionLog names the storage log of a queue partition.
func PartitionLog(queueID string, partition int32) string {
	return fmt.Sprintf("q/%s/%d", queueID, partition)
}

// DeliveryStateLog names the storage log of a consumer group's delivery state.
func DeliveryStateLog(queueID, groupID string) string { return "d/" + queueID + "/" + groupID }

// DeadLetterLog names the log of a consumer group's dead letters.
func DeadLetterLog(queueID, groupID string) string { return "x/" + queueID + "/" + groupID }

// DeadLetterStateLog names the delivery state log of a group's dead letters.
func DeadLetterStateLog(queueID, groupID string) string { return "y/" + queueID + "/" + groupID }

// BroadcastStateLog names the delivery state log of one broadcast consumer.
func BroadcastStateLog(queueID, groupID, consumerID string) string {
	return "b/" + queueID + "/" + groupID + broadcastSeparator + consumerID
}

// broadcastSeparator joins group and consumer ids; neither contains it.
const broadcastSeparator = "~"

// TimerBucketLog names the scheduler's log of a queue's scheduled messages
// due in one hour, counted in hours since the Unix epoch.
func TimerBucketLog(queueID string, hour int64) string {
	return fmt.Sprintf("t/%s/%d", queueID, hour)
}

// InternalLogKinds are the kinds of log that belong to a consumer group.
var InternalLogKinds = []string{"d", "x", "y", "b"}

// QueueLogKinds are the kinds of internal log that belong to a queue as a
// whole rather than to one of its groups: the scheduler's timer buckets.
var QueueLogKinds = []string{"t"}

// ParseLog splits a log name into its kind (q, d, x, y, b or t), queue id
// and the rest (a partition number, or a group id, or for b a group id and a
// consumer id joined by "~", or for t an hour).
func ParseLog(name string) (kind, queueID, rest string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || !IsQueueID(parts[1]) || parts[2] == "" {
		return "", "", "", false
	}
	switch parts[0] {
	case "q", "d", "x", "y", "b", "t":
		return parts[0], parts[1], parts[2], true
	}
	return "", "", "", false
}

// LogGroup returns the group id an internal log belongs to.
func LogGroup(kind, rest string) string {
	if kind == "b" {
		group, _, _ := strings.Cut(rest, broadcastSeparator)
		return group
	}
	return rest
}
