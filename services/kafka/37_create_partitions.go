package kafka

// CreatePartitions (key 37): versions 0-3.
//
// Grows a topic to the count asked through the metadata role's
// QueueService (AddPartitions); a count not above the current one is
// INVALID_PARTITIONS, as in Kafka, and so is one above the metadata role's
// maximum. A manual assignment of the new partitions is INVALID_REQUEST:
// DMS places replicas itself. validate_only checks the topic and that the
// count grows it.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
)

func init() { register(kmsg.CreatePartitions.Int16(), 0, 3, (*Server).createPartitions) }

func (s *Server) createPartitions(ctx context.Context, r *request, req *kmsg.CreatePartitionsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.CreatePartitionsResponse)
	project := s.project(r)
	for _, t := range req.Topics {
		rt := kmsg.NewCreatePartitionsResponseTopic()
		rt.Topic = t.Topic
		q, err := s.topic(ctx, project, t.Topic)
		switch {
		case err != nil:
		case len(t.Assignment) > 0:
			err = fmt.Errorf("%w: DMS places replicas itself; give only the new partition count", kerr.InvalidRequest)
		case t.Count <= q.GetPartitionCount():
			err = fmt.Errorf("%w: topic %q has %d partitions; the count must be larger", kerr.InvalidPartitions, t.Topic, q.GetPartitionCount())
		case req.ValidateOnly:
		default:
			_, err = s.deps.Queues.AddPartitions(ctx, &dmsv1.AddPartitionsRequest{Name: catalog.QueueResource(project, q.GetId()), PartitionCount: t.Count})
		}
		if err != nil {
			rt.ErrorCode, rt.ErrorMessage = errorCode(err), errorMessage(err)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, nil
}
