package kafka

// DescribeGroups (key 15): versions 0-6.
//
// A group's state, protocol and members (client id and host, and in a
// Stable group each member's subscription and assignment). A group that
// does not exist is described as Dead, with GROUP_ID_NOT_FOUND from v6 on
// (no error before, as Kafka). A group coordinated by another node is
// NOT_COORDINATOR. Authorized operations (v3+), when asked for, are every
// group operation: DMS has no Kafka ACLs.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.DescribeGroups.Int16(), 0, 6, (*Server).describeGroups) }

// groupOperations are the ACL operations of a group, as a bit field: READ
// (3), DELETE (6) and DESCRIBE (8).
const groupOperations = 1<<3 | 1<<6 | 1<<8

func (s *Server) describeGroups(ctx context.Context, r *request, req *kmsg.DescribeGroupsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DescribeGroupsResponse)
	for _, name := range req.Groups {
		g := kmsg.NewDescribeGroupsResponseGroup()
		g.Group = name
		d, err := s.groups.Describe(ctx, s.project(r), name)
		switch {
		case err != nil:
			g.ErrorCode, g.ErrorMessage = groups.Code(err), errorMessage(err)
		case d.State == groups.Dead && req.Version >= 6:
			g.ErrorCode = kerr.GroupIDNotFound.Code
		}
		g.State, g.ProtocolType, g.Protocol = d.State.String(), d.ProtocolType, d.Protocol
		if err != nil {
			g.State = ""
		}
		if req.IncludeAuthorizedOperations {
			g.AuthorizedOperations = groupOperations
		}
		for _, m := range d.Members {
			gm := kmsg.NewDescribeGroupsResponseGroupMember()
			gm.MemberID, gm.InstanceID, gm.ClientID, gm.ClientHost = m.MemberID, nullable(m.InstanceID), m.ClientID, m.ClientHost
			gm.ProtocolMetadata, gm.MemberAssignment = nonNil(m.Metadata), nonNil(m.Assignment)
			g.Members = append(g.Members, gm)
		}
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}

// nonNil returns b, or an empty slice for nil (non-nullable bytes).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
