package kafka

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/types/known/durationpb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/storage/logid"
)

// Share groups (KIP-932) are DMS consumer groups: a share group of a topic
// is the DMS group of the topic's queue with the share group's id as its
// display name, created when first used. DMS groups already keep what a
// share group needs per message — deliveries with a visibility timeout
// (Kafka's acquisition lock), acks, delivery counts, retries and dead
// letters — so a Kafka share consumer and a DMS consumer of the same group
// share its messages. ShareFetch receives from the group and returns the
// stored batches holding the messages received, with their offsets as
// acquired records; acknowledgements settle them by their receipt handles:
// accept is a success, release a failure (the message is available again
// at once and the attempt counts), reject a success too, as Kafka archives
// a rejected record and never delivers it again.
//
// Membership (ShareGroupHeartbeat) is kept in memory by the group's
// coordinator: every member is assigned every partition of the topics it
// subscribes to, as share groups allow (the DMS group shares the messages
// out). A share session (the receipt handles of what a member was given)
// lives on the node that served its fetches.

// shareLock is the acquisition lock: the visibility timeout of a message
// fetched by a share consumer (Kafka's group.share.record.lock.duration.ms).
const shareLock = 30 * time.Second

// shareHeartbeatInterval is Kafka's group.share.heartbeat.interval.ms; a
// member not heard from for shareSessionTimeout
// (group.share.session.timeout.ms) is forgotten.
const (
	shareHeartbeatInterval = 5 * time.Second
	shareSessionTimeout    = 45 * time.Second
)

// shareState is the share groups' membership (on their coordinator) and
// the share sessions (on the node serving the fetches).
type shareState struct {
	mu       sync.Mutex
	groups   map[string]*shareGroup   // by groups.Key
	sessions map[string]*shareSession // by group key and member id
}

func newShareState() *shareState {
	return &shareState{groups: map[string]*shareGroup{}, sessions: map[string]*shareSession{}}
}

type shareGroup struct {
	members map[string]*shareMember
	// epoch counts the group's changes of membership and assignment.
	epoch int32
}

type shareMember struct {
	clientID, clientHost string
	epoch                int32
	topics               []string
	assigned             map[[16]byte][]int32 // the assignment last sent
	seen                 time.Time
}

// listedShareGroup is a share group as ListGroups shows it.
type listedShareGroup struct{ name, state string }

// shareGroups lists the share groups of a project this node keeps the
// members of (their coordinator), by name.
func (s *Server) shareGroups(project string) []listedShareGroup {
	ss := s.shares
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []listedShareGroup
	prefix := project + "/"
	now := time.Now()
	for key, g := range ss.groups {
		if !strings.HasPrefix(key, prefix) {
			continue
		}
		state := "Empty"
		for _, m := range g.members {
			if now.Sub(m.seen) <= shareSessionTimeout {
				state = "Stable"
			}
		}
		out = append(out, listedShareGroup{name: key[len(prefix):], state: state})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// sharePartition names a partition of a session.
type sharePartition struct {
	topic     [16]byte
	partition int32
}

// shareSession is a member's fetch session: its epoch, the partitions it
// fetches, and the receipt handle of each message it holds.
type shareSession struct {
	// conn is the connection the session was opened on: as in Kafka, a
	// session ends with its connection and what it holds is released.
	conn    *conn
	mu      sync.Mutex
	epoch   int32
	parts   map[sharePartition]bool
	handles map[sharePartition]map[int64]heldMessage
}

// heldMessage is a message a member holds, and the DMS group it came from.
type heldMessage struct {
	group, handle string
}

// shareGroupName is the DMS group of a share group on a topic.
func shareGroupName(project string, q *metadatav1.QueueRecord, group string) string {
	return catalog.GroupResource(project, q.GetId(), group)
}

// ensureShareGroup creates the DMS group of a share group on a topic when
// it does not exist yet.
func (s *Server) ensureShareGroup(ctx context.Context, project string, q *metadatav1.QueueRecord, group string) error {
	if _, err := s.deps.Catalog.ResolveGroup(ctx, q, group); err == nil {
		return nil
	} else if !catalog.IsNotFound(err) {
		return err
	}
	if err := catalog.ValidateGroupDisplayName(group); err != nil {
		return fmt.Errorf("%w: %v", kerr.InvalidGroupID, err)
	}
	_, err := s.deps.Queues.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{
		Parent: catalog.QueueResource(project, q.GetId()), Group: &dmsv1.ConsumerGroup{DisplayName: group}})
	if err != nil && errorCode(err) != kerr.TopicAlreadyExists.Code {
		if _, rerr := s.deps.Catalog.ResolveGroup(ctx, q, group); rerr == nil {
			return nil // created by another request meanwhile
		}
		return err
	}
	return nil
}

// session returns the share session a request names, applying the epoch
// rules: 0 opens a new one on the request's connection (replacing any; the
// replaced one's messages are released), -1 closes it after this request,
// any other must be the session's next epoch.
func (s *Server) session(r *request, key string, epoch int32) (*shareSession, error) {
	ss := s.shares
	ss.mu.Lock()
	defer ss.mu.Unlock()
	sess := ss.sessions[key]
	switch {
	case epoch == 0:
		if sess != nil {
			go s.releaseAll(sess)
		}
		sess = &shareSession{conn: r.conn, epoch: 1, parts: map[sharePartition]bool{}, handles: map[sharePartition]map[int64]heldMessage{}}
		ss.sessions[key] = sess
		return sess, nil
	case sess == nil:
		return nil, kerr.ShareSessionNotFound
	case epoch == -1:
		delete(ss.sessions, key)
		return sess, nil
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if epoch != sess.epoch {
		return nil, fmt.Errorf("%w: the session is at epoch %d, the request says %d", kerr.InvalidShareSessionEpoch, sess.epoch, epoch)
	}
	sess.epoch++
	if sess.epoch < 0 {
		sess.epoch = 1
	}
	return sess, nil
}

// connClosed ends the share sessions opened on a connection, releasing the
// messages they hold for other consumers.
func (s *Server) connClosed(c *conn) {
	if s.ctx.Err() != nil {
		// The server stops: the roles behind it stop too, and the
		// messages come back when their lock expires.
		return
	}
	ss := s.shares
	var ended []*shareSession
	ss.mu.Lock()
	for key, sess := range ss.sessions {
		if sess.conn == c {
			delete(ss.sessions, key)
			ended = append(ended, sess)
		}
	}
	ss.mu.Unlock()
	for _, sess := range ended {
		s.releaseAll(sess)
	}
}

// ackBatch is an acknowledgement batch of either request.
type ackBatch struct {
	first, last int64
	types       []int8
}

// acknowledge settles the messages of a partition that a member
// acknowledges. Offsets the session does not hold (their lock expired,
// they were settled already) are INVALID_RECORD_STATE, as in Kafka.
func (s *Server) acknowledge(ctx context.Context, sess *shareSession, p sharePartition, batches []ackBatch) error {
	byGroup := map[string][]*dmsv1.Ack{}
	var missing error
	sess.mu.Lock()
	held := sess.handles[p]
	for _, b := range batches {
		if b.last < b.first || b.last-b.first > 1<<20 || len(b.types) == 0 {
			sess.mu.Unlock()
			return fmt.Errorf("%w: acknowledgement batch [%d, %d] with %d types", kerr.InvalidRequest, b.first, b.last, len(b.types))
		}
		for o := b.first; o <= b.last; o++ {
			t := b.types[0]
			if len(b.types) > 1 {
				if int(o-b.first) >= len(b.types) {
					sess.mu.Unlock()
					return fmt.Errorf("%w: acknowledgement batch [%d, %d] with %d types", kerr.InvalidRequest, b.first, b.last, len(b.types))
				}
				t = b.types[o-b.first]
			}
			if t == 0 {
				continue // a gap: no record there
			}
			m, ok := held[o]
			if !ok {
				missing = fmt.Errorf("%w: offset %d is not held by this member", kerr.InvalidRecordState, o)
				continue
			}
			delete(held, o)
			status := dmsv1.AckStatus_ACK_STATUS_SUCCESS
			switch t {
			case 1, 3: // accept; reject (archived: never delivered again)
			case 2: // release
				status = dmsv1.AckStatus_ACK_STATUS_FAIL
			default:
				sess.mu.Unlock()
				return fmt.Errorf("%w: acknowledgement type %d", kerr.InvalidRequest, t)
			}
			byGroup[m.group] = append(byGroup[m.group], &dmsv1.Ack{ReceiptHandle: m.handle, Status: status})
		}
	}
	sess.mu.Unlock()
	for group, acks := range byGroup {
		resp, err := s.deps.Consumer.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: group, Acks: acks})
		if err != nil {
			return err
		}
		for _, r := range resp.GetResults() {
			if !r.GetApplied() {
				// The lock expired and the message went to another
				// consumer, or was settled already.
				missing = fmt.Errorf("%w: %s", kerr.InvalidRecordState, r.GetErrorMessage())
			}
		}
	}
	return missing
}

// releaseAll makes every message a closed session held available again.
func (s *Server) releaseAll(sess *shareSession) {
	sess.mu.Lock()
	byGroup := map[string][]*dmsv1.Ack{}
	for _, held := range sess.handles {
		for _, m := range held {
			byGroup[m.group] = append(byGroup[m.group], &dmsv1.Ack{ReceiptHandle: m.handle, Status: dmsv1.AckStatus_ACK_STATUS_FAIL})
		}
	}
	sess.handles = map[sharePartition]map[int64]heldMessage{}
	sess.mu.Unlock()
	ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
	defer cancel()
	for group, acks := range byGroup {
		if _, err := s.deps.Consumer.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: group, Acks: acks}); err != nil {
			s.logger.Warn("kafka: share session's messages not released; they come back after their lock", "group", group, "err", err)
		}
	}
}

// acquired is what a share fetch got from one partition.
type acquired struct {
	batches []byte
	records []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord
}

// shareReceive receives up to max messages of the session's partitions of
// one topic, waiting up to wait, and returns them by partition with the
// stored batches holding them. The receive names the session's partitions:
// in a cluster a member fetches each partition from its leader, and each
// node must hand out only the messages of the partitions it was asked for.
// Messages of other partitions (from a delivery node that does not know
// the partitions field yet) are released at once; that counts a delivery,
// as a lock expiry would.
func (s *Server) shareReceive(ctx context.Context, project string, q *metadatav1.QueueRecord, group string, sess *shareSession, max int32, wait time.Duration) (map[int32]*acquired, error) {
	name := shareGroupName(project, q, group)
	tid := topicID(q)
	var partitions []int32
	sess.mu.Lock()
	for p := range sess.parts {
		if p.topic == tid {
			partitions = append(partitions, p.partition)
		}
	}
	sess.mu.Unlock()
	if len(partitions) == 0 {
		return nil, nil
	}
	resp, err := s.deps.Consumer.ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: name, MaxMessages: max,
		WaitTime: durationpb.New(wait), VisibilityTimeout: durationpb.New(shareLock), Partitions: partitions})
	if err != nil {
		return nil, err
	}
	byPart := map[int32][]*dmsv1.ReceivedMessage{}
	var foreign []string
	sess.mu.Lock()
	for _, m := range resp.GetMessages() {
		p := sharePartition{topic: tid, partition: m.GetPartition()}
		if !sess.parts[p] {
			foreign = append(foreign, m.GetReceiptHandle())
			continue
		}
		if sess.handles[p] == nil {
			sess.handles[p] = map[int64]heldMessage{}
		}
		sess.handles[p][m.GetOffset()] = heldMessage{group: name, handle: m.GetReceiptHandle()}
		byPart[m.GetPartition()] = append(byPart[m.GetPartition()], m)
	}
	sess.mu.Unlock()
	if len(foreign) > 0 {
		// Released at once (a failure: the delivery was counted when it
		// was received, as a lock expiry would count it).
		acks := make([]*dmsv1.Ack, len(foreign))
		for i, h := range foreign {
			acks[i] = &dmsv1.Ack{ReceiptHandle: h, Status: dmsv1.AckStatus_ACK_STATUS_FAIL}
		}
		if _, err := s.deps.Consumer.AckMessages(ctx, &dmsv1.AckMessagesRequest{Group: name, Acks: acks}); err != nil {
			s.logger.Warn("kafka: messages of partitions outside a share session not released; they come back after their lock", "err", err)
		}
	}
	out := map[int32]*acquired{}
	for p, msgs := range byPart {
		sort.Slice(msgs, func(i, j int) bool { return msgs[i].GetOffset() < msgs[j].GetOffset() })
		a := &acquired{}
		for _, m := range msgs {
			n := len(a.records)
			dc := int16(min(m.GetDeliveryCount(), 1<<15-1))
			if n > 0 && a.records[n-1].LastOffset == m.GetOffset()-1 && a.records[n-1].DeliveryCount == dc {
				a.records[n-1].LastOffset++
				continue
			}
			a.records = append(a.records, kmsg.ShareFetchResponseTopicPartitionAcquiredRecord{FirstOffset: m.GetOffset(), LastOffset: m.GetOffset(), DeliveryCount: dc})
		}
		if a.batches, err = s.batchesHolding(ctx, q, p, msgs); err != nil {
			return nil, err
		}
		out[p] = a
	}
	return out, nil
}

// batchesHolding reads the stored batches of a partition that hold the
// given messages (sorted by offset), as Kafka batches.
func (s *Server) batchesHolding(ctx context.Context, q *metadatav1.QueueRecord, p int32, msgs []*dmsv1.ReceivedMessage) ([]byte, error) {
	var out []byte
	i := 0
	for i < len(msgs) {
		offset := msgs[i].GetOffset()
		rr, err := s.deps.Storage.Read(ctx, &storagev1.ReadRequest{Log: logid.Partition(q.GetId(), p), Offset: offset, MaxBytes: 1 << 20, RawBatches: true})
		if err != nil {
			return nil, err
		}
		progressed := false
		for _, b := range rr.GetBatches() {
			end := b.GetBaseOffset() + int64(b.GetRecordCount())
			if i >= len(msgs) || msgs[i].GetOffset() >= end {
				continue
			}
			if msgs[i].GetOffset() < b.GetBaseOffset() {
				continue
			}
			if out, err = appendKafkaBatch(out, b); err != nil {
				return nil, fmt.Errorf("kafka: partition %d of %q: %w", p, q.GetDisplayName(), err)
			}
			for i < len(msgs) && msgs[i].GetOffset() < end {
				i++
			}
			progressed = true
		}
		if !progressed {
			// Nothing stored there any more (retention): the message
			// cannot be shown; skip it.
			i++
		}
	}
	return out, nil
}
