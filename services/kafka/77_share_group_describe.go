package kafka

// ShareGroupDescribe (key 77): version 1.
//
// Describes share groups from the membership their coordinator keeps
// (76_share_group_heartbeat.go): each member with its client, subscribed
// topics and assignment (every partition of those topics), the group's
// epoch (its changes of membership and assignment) and the "simple"
// assignor. A group this node does not coordinate is NOT_COORDINATOR; one
// it has no members of, GROUP_ID_NOT_FOUND (state Dead), as Kafka answers
// for a group that does not exist. Authorized operations, when asked for,
// are every group operation: DMS has no Kafka ACLs.

import (
	"context"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.ShareGroupDescribe.Int16(), 1, 1, (*Server).shareGroupDescribe) }

func (s *Server) shareGroupDescribe(ctx context.Context, r *request, req *kmsg.ShareGroupDescribeRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ShareGroupDescribeResponse)
	project := s.project(r)
	for _, id := range req.GroupIDs {
		g := kmsg.NewShareGroupDescribeResponseGroup()
		g.GroupID, g.Assignor = id, "simple"
		if req.IncludeAuthorizedOperations {
			g.AuthorizedOperations = groupOperations
		}
		if owner := s.groups.Owner(project, id); owner != s.deps.Node {
			g.ErrorCode, g.GroupState = kerr.NotCoordinator.Code, "Dead"
			resp.Groups = append(resp.Groups, g)
			continue
		}
		s.describeShareGroup(ctx, project, &g)
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

// describeShareGroup fills in a share group's state and members.
func (s *Server) describeShareGroup(ctx context.Context, project string, g *kmsg.ShareGroupDescribeResponseGroup) {
	ss := s.shares
	ss.mu.Lock()
	sg := ss.groups[groups.Key(project, g.GroupID)]
	if sg == nil {
		ss.mu.Unlock()
		g.ErrorCode, g.GroupState = kerr.GroupIDNotFound.Code, "Dead"
		return
	}
	type memberView struct {
		id       string
		m        shareMember
		assigned map[[16]byte][]int32
	}
	var views []memberView
	now := time.Now()
	for id, m := range sg.members {
		if now.Sub(m.seen) <= shareSessionTimeout {
			views = append(views, memberView{id: id, m: *m, assigned: m.assigned})
		}
	}
	g.GroupEpoch, g.AssignmentEpoch = sg.epoch, sg.epoch
	ss.mu.Unlock()
	slices.SortFunc(views, func(a, b memberView) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	g.GroupState = "Empty"
	if len(views) > 0 {
		g.GroupState = "Stable"
	}
	for _, v := range views {
		gm := kmsg.NewShareGroupDescribeResponseGroupMember()
		gm.MemberID, gm.MemberEpoch, gm.ClientID, gm.ClientHost = v.id, v.m.epoch, v.m.clientID, v.m.clientHost
		gm.SubscribedTopicNames = slices.Clone(v.m.topics)
		for tid, parts := range v.assigned {
			tp := kmsg.NewShareGroupDescribeResponseGroupMemberAssignmentTopicPartition()
			tp.TopicID, tp.Partitions = tid, slices.Clone(parts)
			if q, err := s.topicByID(ctx, project, tid); err == nil {
				tp.Topic = q.GetDisplayName()
			}
			gm.Assignment.TopicPartitions = append(gm.Assignment.TopicPartitions, tp)
		}
		g.Members = append(g.Members, gm)
	}
}
