package kafka

// Heartbeat (key 12): versions 0-4.
//
// Keeps a member's session; REBALANCE_IN_PROGRESS tells it to join again,
// ILLEGAL_GENERATION and UNKNOWN_MEMBER_ID that it is not (or no longer)
// in this generation, FENCED_INSTANCE_ID (v3+) that another process took
// its group.instance.id.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.Heartbeat.Int16(), 0, 4, (*Server).heartbeat) }

func (s *Server) heartbeat(ctx context.Context, r *request, req *kmsg.HeartbeatRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
	err := s.groups.Heartbeat(ctx, s.project(r), req.Group, req.MemberID, deref(req.InstanceID), req.Generation)
	resp.ErrorCode = groups.Code(err)
	return resp, nil
}
