package groups

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TopicPartition names a partition by topic name, as committed offsets do.
type TopicPartition struct {
	Topic     string
	Partition int32
}

// Offset is a committed offset.
type Offset struct {
	Offset       int64
	LeaderEpoch  int32
	Metadata     string
	CommitMillis int64
}

// CommitRequest is an OffsetCommit. A generation below 0 with no member
// is a commit from outside group management (a "simple" consumer, an
// admin tool), allowed while the group has no members.
type CommitRequest struct {
	MemberID, InstanceID string
	Generation           int32
	Offsets              map[TopicPartition]Offset
}

// Commit makes offsets durable; the error applies to every partition.
func (c *Coordinator) Commit(ctx context.Context, project, name string, req CommitRequest) error {
	g, err := c.lookup(ctx, project, name, req.Generation < 0)
	if err != nil {
		return err
	}
	if g == nil {
		// Not a group: a member of an older life of it.
		return kerr.IllegalGeneration
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.state == Dead:
		return kerr.CoordinatorNotAvailable
	case req.Generation < 0 && g.state == Empty:
	default:
		if err := g.checkMember(req.MemberID, req.InstanceID); err != nil {
			return err
		}
		if req.Generation != g.generation {
			return kerr.IllegalGeneration
		}
		if g.state == CompletingRebalance {
			// Its assignment may change: it commits once it has it.
			return kerr.RebalanceInProgress
		}
		g.touch(g.members[req.MemberID])
	}
	entries := make([]entry, 0, len(req.Offsets))
	for tp, o := range req.Offsets {
		o.CommitMillis = c.now().UnixMilli()
		req.Offsets[tp] = o
		entries = append(entries, offsetEntry(g.key, tp, &o))
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := g.sh.appendEntries(wctx, entries); err != nil {
		return err
	}
	for tp, o := range req.Offsets {
		g.offsets[tp] = o
	}
	return nil
}

// Fetch returns the committed offsets of the partitions asked for, or of
// every partition that has one when topics is nil. A partition without a
// commit is absent.
func (c *Coordinator) Fetch(ctx context.Context, project, name string, partitions []TopicPartition, all bool) (map[TopicPartition]Offset, error) {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil || g == nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[TopicPartition]Offset{}
	if all {
		for tp, o := range g.offsets {
			out[tp] = o
		}
		return out, nil
	}
	for _, tp := range partitions {
		if o, ok := g.offsets[tp]; ok {
			out[tp] = o
		}
	}
	return out, nil
}

// Description is a group as DescribeGroups shows it.
type Description struct {
	State                  State
	ProtocolType, Protocol string
	Members                []DescribedMember
}

// DescribedMember is a member as DescribeGroups shows it.
type DescribedMember struct {
	MemberID, InstanceID, ClientID, ClientHost string
	Metadata, Assignment                       []byte
}

// Describe returns a group's state and members; a group that does not
// exist is Dead with no members, as Kafka answers it.
func (c *Coordinator) Describe(ctx context.Context, project, name string) (Description, error) {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil {
		return Description{}, err
	}
	if g == nil {
		return Description{State: Dead}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.isShell() {
		return Description{State: Dead}, nil
	}
	d := Description{State: g.state, ProtocolType: g.protocolType}
	if g.state == Stable || g.state == CompletingRebalance {
		d.Protocol = g.protocol
	}
	for _, m := range g.sortedMembers() {
		dm := DescribedMember{MemberID: m.id, InstanceID: m.instanceID, ClientID: m.clientID, ClientHost: m.clientHost}
		if g.state == Stable {
			// Metadata and assignment mean something only for the
			// protocol in force.
			dm.Metadata, dm.Assignment = m.metadataFor(g.protocol), m.assignment
		}
		d.Members = append(d.Members, dm)
	}
	return d, nil
}

// Delete deletes an empty group with its offsets.
func (c *Coordinator) Delete(ctx context.Context, project, name string) error {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil {
		return err
	}
	if g == nil {
		return kerr.GroupIDNotFound
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case Dead:
		return kerr.GroupIDNotFound
	case Empty:
	default:
		return kerr.NonEmptyGroup
	}
	return g.delete(ctx)
}

// delete writes the group's tombstone, which deletes its offsets too (see
// replay), and drops it. Called with mu held.
func (g *group) delete(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := g.sh.appendEntries(wctx, []entry{groupEntry(g.key, nil)}); err != nil {
		return err
	}
	g.state = Dead
	g.stopTimers()
	g.sh.mu.Lock()
	if g.sh.groups[g.key] == g {
		delete(g.sh.groups, g.key)
	}
	g.sh.mu.Unlock()
	return nil
}

// expired reports whether an Empty group's offsets are past their
// retention: since it became empty and since its last commit.
func (g *group) expired(now time.Time, retention time.Duration) bool {
	if g.state != Empty || len(g.pending) > 0 || g.isShell() {
		return false
	}
	last := g.emptySince
	for _, o := range g.offsets {
		if t := time.UnixMilli(o.CommitMillis); t.After(last) {
			last = t
		}
	}
	return now.Sub(last) > retention
}

// DeleteOffsets deletes committed offsets of a group. The partitions of
// topics its members subscribe to are refused with
// GROUP_SUBSCRIBED_TO_TOPIC; the others are deleted. The error is the
// group's; the map gives the partitions refused.
func (c *Coordinator) DeleteOffsets(ctx context.Context, project, name string, partitions []TopicPartition) (map[TopicPartition]*kerr.Error, error) {
	g, err := c.lookup(ctx, project, name, false)
	if err != nil {
		return nil, err
	}
	if g == nil {
		return nil, kerr.GroupIDNotFound
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state == Dead {
		return nil, kerr.GroupIDNotFound
	}
	if g.state != Empty && g.protocolType != "consumer" {
		return nil, kerr.NonEmptyGroup
	}
	subscribed := g.subscribedTopics()
	refused := map[TopicPartition]*kerr.Error{}
	var entries []entry
	var deleted []TopicPartition
	for _, tp := range partitions {
		if slices.Contains(subscribed, tp.Topic) {
			refused[tp] = kerr.GroupSubscribedToTopic
			continue
		}
		if _, ok := g.offsets[tp]; ok {
			entries = append(entries, offsetEntry(g.key, tp, nil))
			deleted = append(deleted, tp)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	if err := g.sh.appendEntries(wctx, entries); err != nil {
		return nil, err
	}
	for _, tp := range deleted {
		delete(g.offsets, tp)
	}
	return refused, nil
}

// subscribedTopics lists the topics the members of a consumer group
// subscribe to, from their protocol metadata.
func (g *group) subscribedTopics() []string {
	var out []string
	if g.protocolType != "consumer" {
		return nil
	}
	for _, m := range g.members {
		var meta kmsg.ConsumerMemberMetadata
		for _, p := range m.protocols {
			if meta.ReadFrom(p.Metadata) == nil {
				out = append(out, meta.Topics...)
			}
		}
	}
	return out
}
