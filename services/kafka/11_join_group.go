package kafka

// JoinGroup (key 11): versions 0-9.
//
// Served by the group's coordinator (groups.Coordinator.Join): the answer
// waits until the rebalance completes. v0 and v1 are served for
// librdkafka before 2.11 and segmentio/kafka-go (Kafka 4.0.1 brought them
// back, KAFKA-19444); v0 has no rebalance timeout, the session timeout
// stands for it. A member without an id is answered MEMBER_ID_REQUIRED
// with its id only from v4 on (older clients cannot follow it), and never
// when it is static (v5+ group.instance.id), as in Kafka. v9's
// skip_assignment tells a static leader rejoining a Stable group not to
// assign again.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.JoinGroup.Int16(), 0, 9, (*Server).joinGroup) }

func (s *Server) joinGroup(ctx context.Context, r *request, req *kmsg.JoinGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
	jr := groups.JoinRequest{
		MemberID: req.MemberID, InstanceID: deref(req.InstanceID), ClientID: r.clientID, ClientHost: clientHost(r),
		ProtocolType: req.ProtocolType, SessionTimeout: ms(req.SessionTimeoutMillis),
		RequireKnownMemberID: req.Version >= 4,
	}
	if req.Version >= 1 {
		jr.RebalanceTimeout = ms(req.RebalanceTimeoutMillis)
	}
	for _, p := range req.Protocols {
		jr.Protocols = append(jr.Protocols, groups.Protocol{Name: p.Name, Metadata: p.Metadata})
	}
	res := s.groups.Join(ctx, s.project(r), req.Group, jr)
	resp.Generation, resp.MemberID, resp.LeaderID = -1, res.MemberID, res.Leader
	if res.Err != nil {
		resp.ErrorCode = res.Err.Code
		return resp, nil
	}
	resp.Generation = res.Generation
	resp.ProtocolType, resp.Protocol = nullable(res.ProtocolType), nullable(res.Protocol)
	resp.SkipAssignment = res.SkipAssignment
	for _, m := range res.Members {
		rm := kmsg.NewJoinGroupResponseMember()
		rm.MemberID, rm.InstanceID, rm.ProtocolMetadata = m.MemberID, nullable(m.InstanceID), m.Metadata
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
