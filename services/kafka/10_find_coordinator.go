package kafka

// FindCoordinator (key 10): versions 0-6.
//
// The coordinator of a consumer group is the node owning the delivery shard
// the group hashes to (groups/doc.go), given with the Kafka address it
// advertises; v4+ asks for several groups at once. While the shard has no
// owner (a failover), or its owner runs no Kafka listener, the answer is
// COORDINATOR_NOT_AVAILABLE, which clients retry. DMS serves no Kafka
// transactions: a transaction coordinator (1) is refused with
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as InitProducerId refuses a
// transactional id, because that is the refusal clients stop at: Java's
// initTransactions throws TransactionalIdAuthorizationException at once and
// librdkafka raises a fatal error, where INVALID_REQUEST left librdkafka
// retrying until its timeout and Java with a bare KafkaException. Other
// coordinator types are refused with INVALID_REQUEST.

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.FindCoordinator.Int16(), 0, 6, (*Server).findCoordinator) }

func (s *Server) findCoordinator(_ context.Context, r *request, req *kmsg.FindCoordinatorRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	keys := req.CoordinatorKeys
	if req.Version < 4 {
		keys = []string{req.CoordinatorKey}
	}
	brokers := s.brokers()
	for _, key := range keys {
		c := kmsg.NewFindCoordinatorResponseCoordinator()
		c.Key, c.NodeID = key, -1
		err := s.coordinator(r, req.CoordinatorType, key, brokers, &c)
		c.ErrorCode, c.ErrorMessage = errorCode(err), errorMessage(err)
		resp.Coordinators = append(resp.Coordinators, c)
	}
	if req.Version < 4 {
		c := resp.Coordinators[0]
		resp.Coordinators = nil
		resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = c.ErrorCode, c.ErrorMessage, c.NodeID, c.Host, c.Port
	}
	return resp, nil
}

// coordinator fills in the coordinator of one key.
func (s *Server) coordinator(r *request, keyType int8, key string, brokers map[string]broker, c *kmsg.FindCoordinatorResponseCoordinator) error {
	switch keyType {
	case 0:
	case 1:
		return fmt.Errorf("%w: DMS does not serve Kafka transactions", kerr.TransactionalIDAuthorizationFailed)
	default:
		return fmt.Errorf("%w: coordinator type %d is not served; DMS serves classic consumer groups (type 0)", kerr.InvalidRequest, keyType)
	}
	owner := s.groups.Owner(s.project(r), key)
	if owner == "" {
		return fmt.Errorf("%w: the group's delivery shard has no owner right now", kerr.CoordinatorNotAvailable)
	}
	b, ok := brokers[owner]
	if !ok {
		return fmt.Errorf("%w: node %q coordinates the group but runs no Kafka listener", kerr.CoordinatorNotAvailable, owner)
	}
	c.NodeID, c.Host, c.Port = b.NodeID, b.Host, b.Port
	return nil
}
