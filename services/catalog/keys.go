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
)

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

// ParseLog splits a log name into its kind ("q" or "d"), queue id and the
// rest (partition number or group id).
func ParseLog(name string) (kind, queueID, rest string, ok bool) {
	parts := strings.Split(name, "/")
	if len(parts) != 3 || (parts[0] != "q" && parts[0] != "d") || !IsQueueID(parts[1]) || parts[2] == "" {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
