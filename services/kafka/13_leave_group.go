package kafka

// LeaveGroup (key 13): versions 0-5.
//
// v0-2 name one member; v3+ a list, by member id or by group.instance.id
// (a static member leaving for good, as kafka-leave-group tools do), with
// an error per member. The group rebalances without them, or becomes Empty.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.LeaveGroup.Int16(), 0, 5, (*Server).leaveGroup) }

func (s *Server) leaveGroup(ctx context.Context, r *request, req *kmsg.LeaveGroupRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.LeaveGroupResponse)
	leaving := []groups.Leaving{{MemberID: req.MemberID}}
	if req.Version >= 3 {
		leaving = leaving[:0]
		for _, m := range req.Members {
			leaving = append(leaving, groups.Leaving{MemberID: m.MemberID, InstanceID: deref(m.InstanceID)})
		}
	}
	errs, err := s.groups.Leave(ctx, s.project(r), req.Group, leaving)
	if err != nil {
		resp.ErrorCode = groups.Code(err)
		return resp, nil
	}
	if req.Version < 3 {
		if errs[0] != nil {
			resp.ErrorCode = errs[0].Code
		}
		return resp, nil
	}
	for i, m := range req.Members {
		rm := kmsg.NewLeaveGroupResponseMember()
		rm.MemberID, rm.InstanceID = m.MemberID, m.InstanceID
		if errs[i] != nil {
			rm.ErrorCode = errs[i].Code
		}
		resp.Members = append(resp.Members, rm)
	}
	return resp, nil
}
