package kafka

// ShareGroupHeartbeat (key 76): version 1.
//
// Membership of a share group (KIP-932), kept in memory by the group's
// coordinator (the owner of the delivery shard the group hashes to; other
// nodes answer NOT_COORDINATOR). Epoch 0 joins, -1 leaves; any other epoch
// must be the member's (FENCED_MEMBER_EPOCH otherwise, UNKNOWN_MEMBER_ID
// for a member not known, which rejoins). Every member is assigned every
// partition of the topics it subscribes to: the messages are shared out
// by the DMS consumer group behind the share group (share.go), which this
// creates when it does not exist. The member epoch moves when the
// assignment changes. Losing the membership (a restart, a failover) only
// makes members join again. Version 0 (Kafka 4.0's early access) is not
// served.

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.ShareGroupHeartbeat.Int16(), 1, 1, (*Server).shareGroupHeartbeat) }

func (s *Server) shareGroupHeartbeat(ctx context.Context, r *request, req *kmsg.ShareGroupHeartbeatRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ShareGroupHeartbeatResponse)
	fail := func(err error) (kmsg.Response, error) {
		resp.ErrorCode, resp.ErrorMessage = errorCode(err), errorMessage(err)
		return resp, nil
	}
	project := s.project(r)
	if req.GroupID == "" {
		return fail(kerr.InvalidGroupID)
	}
	if owner := s.groups.Owner(project, req.GroupID); owner != s.deps.Node {
		return fail(kerr.NotCoordinator)
	}
	memberID := req.MemberID
	if memberID == "" {
		memberID = uuid.NewString()
	}
	resp.MemberID = &memberID
	resp.HeartbeatIntervalMillis = int32(shareHeartbeatInterval.Milliseconds())
	key := groups.Key(project, req.GroupID)

	ss := s.shares
	ss.mu.Lock()
	g := ss.groups[key]
	if g == nil {
		g = &shareGroup{members: map[string]*shareMember{}}
		ss.groups[key] = g
	}
	now := time.Now()
	for id, m := range g.members {
		if now.Sub(m.seen) > shareSessionTimeout {
			delete(g.members, id)
		}
	}
	m := g.members[memberID]
	switch {
	case req.MemberEpoch == -1:
		if g.members[memberID] != nil {
			delete(g.members, memberID)
			g.epoch++
		}
		ss.mu.Unlock()
		resp.MemberEpoch = -1
		return resp, nil
	case req.MemberEpoch == 0:
		if req.SubscribedTopicNames == nil {
			ss.mu.Unlock()
			return fail(kerr.InvalidRequest)
		}
		m = &shareMember{}
		g.members[memberID] = m
	case m == nil:
		ss.mu.Unlock()
		return fail(kerr.UnknownMemberID)
	case req.MemberEpoch != m.epoch:
		ss.mu.Unlock()
		return fail(kerr.FencedMemberEpoch)
	}
	m.seen, m.clientID, m.clientHost = now, r.clientID, clientHost(r)
	if req.SubscribedTopicNames != nil {
		m.topics = slices.Sorted(slices.Values(req.SubscribedTopicNames))
	}
	topics := slices.Clone(m.topics)
	ss.mu.Unlock()

	// Every partition of every subscribed topic that exists.
	assigned := map[[16]byte][]int32{}
	for _, name := range topics {
		q, err := s.topic(ctx, project, name)
		if err != nil {
			continue
		}
		if err := s.ensureShareGroup(ctx, project, q, req.GroupID); err != nil {
			return fail(err)
		}
		var parts []int32
		for p := range q.GetPartitionCount() {
			parts = append(parts, p)
		}
		assigned[topicID(q)] = parts
	}

	ss.mu.Lock()
	defer ss.mu.Unlock()
	if g.members[memberID] != m {
		return fail(kerr.UnknownMemberID) // left meanwhile
	}
	if m.epoch == 0 || !sameAssignment(m.assigned, assigned) {
		g.epoch++
		m.epoch++
		m.assigned = assigned
		a := kmsg.NewShareGroupHeartbeatResponseAssignment()
		for id, parts := range assigned {
			tp := kmsg.NewShareGroupHeartbeatResponseAssignmentTopicPartition()
			tp.TopicID, tp.Partitions = id, parts
			a.TopicPartitions = append(a.TopicPartitions, tp)
		}
		resp.Assignment = &a
	}
	resp.MemberEpoch = m.epoch
	return resp, nil
}

func sameAssignment(a, b map[[16]byte][]int32) bool {
	if len(a) != len(b) {
		return false
	}
	for id, pa := range a {
		if !slices.Equal(pa, b[id]) {
			return false
		}
	}
	return true
}
