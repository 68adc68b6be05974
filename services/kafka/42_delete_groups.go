package kafka

// DeleteGroups (key 42): versions 0-3.
//
// Deletes empty groups with their committed offsets (a tombstone in the
// group's delivery shard log). A group with members is NON_EMPTY_GROUP,
// an unknown one GROUP_ID_NOT_FOUND, one coordinated by another node
// NOT_COORDINATOR, each group answered on its own.

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.DeleteGroups.Int16(), 0, 3, (*Server).deleteGroups) }

func (s *Server) deleteGroups(ctx context.Context, r *request, req *kmsg.DeleteGroupsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DeleteGroupsResponse)
	for _, name := range req.Groups {
		g := kmsg.NewDeleteGroupsResponseGroup()
		g.Group = name
		err := s.groups.Delete(ctx, s.project(r), name)
		g.ErrorCode, g.ErrorMessage = groups.Code(err), errorMessage(err)
		resp.Groups = append(resp.Groups, g)
	}
	return resp, nil
}
