package kafka

// InitProducerId (key 22): versions 0-5.
//
// Gives an idempotent producer a producer id unique in the cluster, from
// the etcd counter of producerids.go, at epoch 0. A producer that names its
// current id and epoch (v3+, KIP-360: it lost track of a sequence and
// starts over) keeps the id at the next epoch; storage then starts that
// producer's sequences over on every partition and refuses the old
// epoch's late batches. The sequence checks themselves are storage's, on
// each partition's leader.
//
// Transactions are not served: a request with a transactional id is
// answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED, which clients report as
// a fatal configuration error rather than retrying.

import (
	"context"
	"math"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.InitProducerID.Int16(), 0, 5, (*Server).initProducerID) }

func (s *Server) initProducerID(ctx context.Context, r *request, req *kmsg.InitProducerIDRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	if req.TransactionalID != nil {
		s.logger.Info("kafka: refused a transactional producer: transactions are not served", "remote", r.conn.remote, "client_id", r.clientID, "transactional_id", *req.TransactionalID)
		resp.ErrorCode = kerr.TransactionalIDAuthorizationFailed.Code
		return resp, nil
	}
	if req.ProducerID >= 0 && req.ProducerEpoch >= 0 && req.ProducerEpoch < math.MaxInt16 {
		resp.ProducerID, resp.ProducerEpoch = req.ProducerID, req.ProducerEpoch+1
		return resp, nil
	}
	id, err := s.producerID.take(ctx)
	if err != nil {
		s.logger.Warn("kafka: no producer id", "err", err)
		// Retriable: the client asks again.
		resp.ErrorCode = kerr.CoordinatorNotAvailable.Code
		return resp, nil
	}
	resp.ProducerID, resp.ProducerEpoch = id, 0
	return resp, nil
}
