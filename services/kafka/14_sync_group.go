package kafka

// SyncGroup (key 14): versions 0-5.
//
// The leader brings every member's assignment (opaque bytes of the
// client-side assignor); the coordinator makes them durable in the group's
// delivery shard log and answers each member with its own. v5 checks the
// protocol type and name when given (INCONSISTENT_GROUP_PROTOCOL).

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.SyncGroup.Int16(), 0, 5, (*Server).syncGroup) }

func (s *Server) syncGroup(ctx context.Context, r *request, req *kmsg.SyncGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.SyncGroupResponse)
	sr := groups.SyncRequest{MemberID: req.MemberID, InstanceID: deref(req.InstanceID), Generation: req.Generation,
		ProtocolType: deref(req.ProtocolType), Protocol: deref(req.Protocol), Assignments: map[string][]byte{}}
	for _, a := range req.GroupAssignment {
		sr.Assignments[a.MemberID] = a.MemberAssignment
	}
	res := s.groups.Sync(ctx, s.project(r), req.Group, sr)
	if res.Err != nil {
		resp.ErrorCode = res.Err.Code
		return resp, nil
	}
	resp.ProtocolType, resp.Protocol = nullable(res.ProtocolType), nullable(res.Protocol)
	resp.MemberAssignment = res.Assignment
	if resp.MemberAssignment == nil {
		resp.MemberAssignment = []byte{}
	}
	return resp, nil
}
