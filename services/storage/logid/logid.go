// Package logid names the logs of the storage contract
// (dms.cluster.storage.v1.LogId): constructors for each kind, validation, a
// compact key for maps and logs, and the relative directory a log keeps its
// files in. The directory layout is the one storage has always used
// (`q/{queue}/{partition}`, `d/{queue}/{group}`, ...), so that data written
// before logs had typed names stays where it is.
package logid

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
)

// ID is the typed name of a log.
type ID = *storagev1.LogId

// Partition names a queue partition.
func Partition(queueID string, partition int32) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_QUEUE_PARTITION, QueueId: queueID, Partition: partition}
}

// GroupState names a consumer group's delivery state log.
func GroupState(queueID, groupID string) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_GROUP_STATE, QueueId: queueID, GroupId: groupID}
}

// DeadLetters names a consumer group's dead-letter log.
func DeadLetters(queueID, groupID string) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_DEAD_LETTERS, QueueId: queueID, GroupId: groupID}
}

// DeadLetterState names the delivery state log of a group's dead letters.
func DeadLetterState(queueID, groupID string) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE, QueueId: queueID, GroupId: groupID}
}

// BroadcastState names the delivery state log of one broadcast consumer.
func BroadcastState(queueID, groupID, consumerID string) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_BROADCAST_STATE, QueueId: queueID, GroupId: groupID, ConsumerId: consumerID}
}

// TimerBucket names the scheduler's log of a queue's messages due in one
// hour, counted in hours since the Unix epoch.
func TimerBucket(queueID string, hour int64) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_TIMER_BUCKET, QueueId: queueID, Hour: hour}
}

// KafkaGroups names the log of the Kafka consumer groups of a delivery
// shard.
func KafkaGroups(shard int32) ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_KAFKA_GROUPS, Shard: shard}
}

// Audit names the cluster's audit trail.
func Audit() ID {
	return &storagev1.LogId{Kind: storagev1.LogKind_LOG_KIND_AUDIT}
}

// auditDir holds the audit trail, in the place of a queue directory; its
// one log is named 0.
const auditDir = "audit"

// kafkaGroupsDir holds the Kafka group logs, one per shard, in the place
// of a queue directory.
const kafkaGroupsDir = "groups"

// The first element of each kind's directory.
var kindDirs = map[storagev1.LogKind]string{
	storagev1.LogKind_LOG_KIND_QUEUE_PARTITION:   "q",
	storagev1.LogKind_LOG_KIND_GROUP_STATE:       "d",
	storagev1.LogKind_LOG_KIND_DEAD_LETTERS:      "x",
	storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE: "y",
	storagev1.LogKind_LOG_KIND_BROADCAST_STATE:   "b",
	storagev1.LogKind_LOG_KIND_TIMER_BUCKET:      "t",
	storagev1.LogKind_LOG_KIND_KAFKA_GROUPS:      "k",
	storagev1.LogKind_LOG_KIND_AUDIT:             "a",
}

// KindDirs lists the first element of every kind's directory, each of which
// holds one directory per queue.
func KindDirs() []string {
	out := make([]string, 0, len(kindDirs))
	for _, k := range []storagev1.LogKind{
		storagev1.LogKind_LOG_KIND_QUEUE_PARTITION, storagev1.LogKind_LOG_KIND_GROUP_STATE,
		storagev1.LogKind_LOG_KIND_DEAD_LETTERS, storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE,
		storagev1.LogKind_LOG_KIND_BROADCAST_STATE, storagev1.LogKind_LOG_KIND_TIMER_BUCKET,
		storagev1.LogKind_LOG_KIND_KAFKA_GROUPS, storagev1.LogKind_LOG_KIND_AUDIT,
	} {
		out = append(out, kindDirs[k])
	}
	return out
}

// broadcastSeparator joins group and consumer ids in a broadcast state
// log's directory; neither contains it.
const broadcastSeparator = "~"

// Validate checks that id names a log: a known kind, a queue id, and the
// fields its kind needs.
func Validate(id ID) error {
	if id == nil {
		return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: no log named")
	}
	if id.GetKind() == storagev1.LogKind_LOG_KIND_KAFKA_GROUPS {
		if id.GetShard() < 0 || id.GetQueueId() != "" {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: a Kafka groups log names a shard and no queue")
		}
		return nil
	}
	if id.GetKind() == storagev1.LogKind_LOG_KIND_AUDIT {
		if id.GetShard() != 0 || id.GetQueueId() != "" {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: the audit log names no shard and no queue")
		}
		return nil
	}
	if !catalog.IsQueueID(id.GetQueueId()) {
		return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: log %s: %q is not a queue id", Key(id), id.GetQueueId())
	}
	switch id.GetKind() {
	case storagev1.LogKind_LOG_KIND_QUEUE_PARTITION:
		if id.GetPartition() < 0 {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: log %s: negative partition", Key(id))
		}
	case storagev1.LogKind_LOG_KIND_GROUP_STATE, storagev1.LogKind_LOG_KIND_DEAD_LETTERS, storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE:
		if !catalog.IsGroupID(id.GetGroupId()) {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: log %s: %q is not a consumer group id", Key(id), id.GetGroupId())
		}
	case storagev1.LogKind_LOG_KIND_BROADCAST_STATE:
		if !catalog.IsGroupID(id.GetGroupId()) {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: log %s: %q is not a consumer group id", Key(id), id.GetGroupId())
		}
		if err := catalog.ValidateConsumerID(id.GetConsumerId()); err != nil {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: log %s: %v", Key(id), err)
		}
	case storagev1.LogKind_LOG_KIND_TIMER_BUCKET:
		if id.GetHour() < 0 {
			return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: log %s: negative hour", Key(id))
		}
	default:
		return errs.Wrapf(errs.ErrResourceNameInvalid, "storage: unknown log kind %d", id.GetKind())
	}
	return nil
}

// Dir is the log's directory relative to the storage directory, with
// forward slashes. id must be valid.
func Dir(id ID) string {
	q := id.GetQueueId()
	d := kindDirs[id.GetKind()]
	switch id.GetKind() {
	case storagev1.LogKind_LOG_KIND_QUEUE_PARTITION:
		return d + "/" + q + "/" + strconv.Itoa(int(id.GetPartition()))
	case storagev1.LogKind_LOG_KIND_BROADCAST_STATE:
		return d + "/" + q + "/" + id.GetGroupId() + broadcastSeparator + id.GetConsumerId()
	case storagev1.LogKind_LOG_KIND_TIMER_BUCKET:
		return d + "/" + q + "/" + strconv.FormatInt(id.GetHour(), 10)
	case storagev1.LogKind_LOG_KIND_KAFKA_GROUPS:
		return d + "/" + kafkaGroupsDir + "/" + strconv.Itoa(int(id.GetShard()))
	case storagev1.LogKind_LOG_KIND_AUDIT:
		return d + "/" + auditDir + "/0"
	default:
		return d + "/" + q + "/" + id.GetGroupId()
	}
}

// Key is a compact, unique text form of id for maps and log lines; it is
// the log's directory.
func Key(id ID) string {
	if kindDirs[id.GetKind()] == "" {
		return fmt.Sprintf("log(kind %d, queue %q)", id.GetKind(), id.GetQueueId())
	}
	return Dir(id)
}

// FromDir parses a directory made by Dir back into the log it holds.
func FromDir(dir string) (ID, bool) {
	parts := strings.Split(path.Clean(dir), "/")
	if len(parts) != 3 {
		return nil, false
	}
	var id *storagev1.LogId
	switch parts[0] {
	case "q":
		p, err := strconv.ParseInt(parts[2], 10, 32)
		if err != nil {
			return nil, false
		}
		id = Partition(parts[1], int32(p))
	case "d":
		id = GroupState(parts[1], parts[2])
	case "x":
		id = DeadLetters(parts[1], parts[2])
	case "y":
		id = DeadLetterState(parts[1], parts[2])
	case "b":
		group, consumer, ok := strings.Cut(parts[2], broadcastSeparator)
		if !ok {
			return nil, false
		}
		id = BroadcastState(parts[1], group, consumer)
	case "t":
		h, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return nil, false
		}
		id = TimerBucket(parts[1], h)
	case "k":
		n, err := strconv.ParseInt(parts[2], 10, 32)
		if err != nil || parts[1] != kafkaGroupsDir {
			return nil, false
		}
		id = KafkaGroups(int32(n))
	case "a":
		if parts[1] != auditDir || parts[2] != "0" {
			return nil, false
		}
		id = Audit()
	default:
		return nil, false
	}
	if Validate(id) != nil || Dir(id) != path.Clean(dir) {
		return nil, false
	}
	return id, true
}

// Describe names a log for people: its queue and partition, or its queue
// and kind, so that an operator reading about a log knows what it holds.
func Describe(id ID) string {
	switch id.GetKind() {
	case storagev1.LogKind_LOG_KIND_QUEUE_PARTITION:
		return fmt.Sprintf("queue %s partition %d", id.GetQueueId(), id.GetPartition())
	case storagev1.LogKind_LOG_KIND_GROUP_STATE:
		return fmt.Sprintf("delivery state of group %s of queue %s", id.GetGroupId(), id.GetQueueId())
	case storagev1.LogKind_LOG_KIND_DEAD_LETTERS:
		return fmt.Sprintf("dead letters of group %s of queue %s", id.GetGroupId(), id.GetQueueId())
	case storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE:
		return fmt.Sprintf("dead-letter state of group %s of queue %s", id.GetGroupId(), id.GetQueueId())
	case storagev1.LogKind_LOG_KIND_BROADCAST_STATE:
		return fmt.Sprintf("state of broadcast consumer %s of group %s of queue %s", id.GetConsumerId(), id.GetGroupId(), id.GetQueueId())
	case storagev1.LogKind_LOG_KIND_TIMER_BUCKET:
		return fmt.Sprintf("timer bucket %d of queue %s", id.GetHour(), id.GetQueueId())
	case storagev1.LogKind_LOG_KIND_KAFKA_GROUPS:
		return fmt.Sprintf("Kafka consumer groups of delivery shard %d", id.GetShard())
	case storagev1.LogKind_LOG_KIND_AUDIT:
		return "the audit trail"
	}
	return Key(id)
}

// IsInternal reports whether a log is written by another role's owner
// (delivery state, dead letters, timers) rather than by producers.
func IsInternal(id ID) bool {
	return id.GetKind() != storagev1.LogKind_LOG_KIND_QUEUE_PARTITION
}

// GroupKinds are the kinds of log that belong to one consumer group.
func GroupKinds() []storagev1.LogKind {
	return []storagev1.LogKind{
		storagev1.LogKind_LOG_KIND_GROUP_STATE, storagev1.LogKind_LOG_KIND_DEAD_LETTERS,
		storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE, storagev1.LogKind_LOG_KIND_BROADCAST_STATE,
	}
}

// HasGroup reports whether a log belongs to a consumer group.
func HasGroup(id ID) bool {
	switch id.GetKind() {
	case storagev1.LogKind_LOG_KIND_GROUP_STATE, storagev1.LogKind_LOG_KIND_DEAD_LETTERS,
		storagev1.LogKind_LOG_KIND_DEAD_LETTER_STATE, storagev1.LogKind_LOG_KIND_BROADCAST_STATE:
		return true
	}
	return false
}
