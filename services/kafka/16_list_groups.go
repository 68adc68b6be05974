package kafka

// ListGroups (key 16): versions 0-5.
//
// Lists the consumer groups of the project that this node coordinates (the
// groups of the delivery shards it owns); admin clients ask every broker
// and merge, as with Kafka. A shard still loading answers
// COORDINATOR_LOAD_IN_PROGRESS. States (v4+) filter case-insensitively.
// Share groups (KIP-932) whose members this node keeps are listed too, of
// type "share" (v5+), Stable with members and Empty without; the others
// are of type "classic".

import (
	"context"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.ListGroups.Int16(), 0, 5, (*Server).listGroups) }

func (s *Server) listGroups(ctx context.Context, r *request, req *kmsg.ListGroupsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.ListGroupsResponse)
	list, err := s.groups.List(ctx, s.project(r))
	if err != nil {
		resp.ErrorCode = groups.Code(err)
		return resp, nil
	}
	want := func(filter []string, v string) bool {
		return len(filter) == 0 || slices.ContainsFunc(filter, func(f string) bool { return strings.EqualFold(f, v) })
	}
	for _, g := range list {
		if !want(req.StatesFilter, g.State.String()) || !want(req.TypesFilter, "classic") {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.Group, g.ProtocolType, g.State.String(), "classic"
		resp.Groups = append(resp.Groups, lg)
	}
	for _, g := range s.shareGroups(s.project(r)) {
		if !want(req.StatesFilter, g.state) || !want(req.TypesFilter, "share") {
			continue
		}
		lg := kmsg.NewListGroupsResponseGroup()
		lg.Group, lg.ProtocolType, lg.GroupState, lg.GroupType = g.name, "share", g.state, "share"
		resp.Groups = append(resp.Groups, lg)
	}
	return resp, nil
}
