package kafka

// OffsetFetch (key 9): versions 0-9.
//
// Reads the committed offsets the group's coordinator keeps (see
// OffsetCommit). v0-7 ask for one group; v8+ for several (Java clients
// batch them), each answered on its own, with its own error. A partition
// without a commit gets offset -1. Null topics (v2+) ask for every
// partition the group has an offset for. v0 and v1 carry no group-level
// error, so a coordinator error is given on every partition. require_stable
// (v7+) is met at once: without transactions no commit is ever pending.
// v9's member id and epoch (KIP-848 groups) are not checked. v10 (topic
// ids) is not served yet.

import (
	"context"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/opendms/dms/services/kafka/groups"
)

func init() { register(kmsg.OffsetFetch.Int16(), 0, 9, (*Server).offsetFetch) }

func (s *Server) offsetFetch(ctx context.Context, r *request, req *kmsg.OffsetFetchRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	project := s.project(r)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			var topics []kmsg.OffsetFetchRequestTopic
			if rg.Topics != nil {
				topics = []kmsg.OffsetFetchRequestTopic{}
				for _, t := range rg.Topics {
					topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
				}
			}
			fetched, code := s.fetchOffsets(ctx, project, rg.Group, topics)
			g := kmsg.NewOffsetFetchResponseGroup()
			g.Group, g.ErrorCode = rg.Group, code
			for _, t := range fetched {
				gt := kmsg.NewOffsetFetchResponseGroupTopic()
				gt.Topic = t.Topic
				for _, p := range t.Partitions {
					gt.Partitions = append(gt.Partitions, kmsg.OffsetFetchResponseGroupTopicPartition{
						Partition: p.Partition, Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, ErrorCode: p.ErrorCode})
				}
				g.Topics = append(g.Topics, gt)
			}
			resp.Groups = append(resp.Groups, g)
		}
		return resp, nil
	}
	topics := req.Topics
	if req.Version < 2 && topics == nil {
		topics = []kmsg.OffsetFetchRequestTopic{}
	}
	fetched, code := s.fetchOffsets(ctx, project, req.Group, topics)
	resp.Topics, resp.ErrorCode = fetched, code
	if req.Version < 2 && code != 0 {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = code
			}
		}
	}
	return resp, nil
}

// fetchOffsets answers one group: the partitions asked for (every one with
// an offset when topics is nil), or the group's error. On an error the
// partitions asked for are listed with offset -1.
func (s *Server) fetchOffsets(ctx context.Context, project, group string, topics []kmsg.OffsetFetchRequestTopic) ([]kmsg.OffsetFetchResponseTopic, int16) {
	var asked []groups.TopicPartition
	for _, t := range topics {
		for _, p := range t.Partitions {
			asked = append(asked, groups.TopicPartition{Topic: t.Topic, Partition: p})
		}
	}
	got, err := s.groups.Fetch(ctx, project, group, asked, topics == nil)
	if topics == nil {
		for tp := range got {
			asked = append(asked, tp)
		}
		sort.Slice(asked, func(i, j int) bool {
			if asked[i].Topic != asked[j].Topic {
				return asked[i].Topic < asked[j].Topic
			}
			return asked[i].Partition < asked[j].Partition
		})
	}
	var out []kmsg.OffsetFetchResponseTopic
	index := map[string]int{}
	for _, tp := range asked {
		i, ok := index[tp.Topic]
		if !ok {
			i = len(out)
			index[tp.Topic] = i
			t := kmsg.NewOffsetFetchResponseTopic()
			t.Topic = tp.Topic
			out = append(out, t)
		}
		p := kmsg.NewOffsetFetchResponseTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch = tp.Partition, -1, -1
		empty := ""
		p.Metadata = &empty
		if o, ok := got[tp]; ok {
			p.Offset, p.LeaderEpoch = o.Offset, o.LeaderEpoch
			md := o.Metadata
			p.Metadata = &md
		}
		out[i].Partitions = append(out[i].Partitions, p)
	}
	return out, groups.Code(err)
}
