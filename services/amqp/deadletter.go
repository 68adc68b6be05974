package amqp

import (
	"context"
	"time"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/ingest"
)

// deadLetter publishes a message that left a queue (reason "rejected" or
// "expired") to the queue's dead-letter exchange, as RabbitMQ does: with
// the queue's x-dead-letter-routing-key or its own routing key, and an
// x-death header saying where and why. A queue without a dead-letter
// exchange drops it (nil). The caller settles the original only when this
// succeeds, so that a failure delivers it again rather than losing it.
func (s *Server) deadLetter(ctx context.Context, project string, aq *amqpQueue, m *dmsv1.Message, reason string) error {
	if aq.props == nil || !aq.props.HasDeadLetterExchange || m == nil {
		return nil
	}
	props, exchange, key := fromDMS(m, aq.name)
	if aq.props.DeadLetterRoutingKey != "" {
		key = aq.props.DeadLetterRoutingKey
	}
	headers := wire.Table{}
	for k, v := range props.Headers {
		headers[k] = v
	}
	headers["x-death"] = []any{wire.Table{
		"queue": aq.name, "reason": reason, "count": int64(1), "exchange": exchange,
		"routing-keys": []any{m.GetAttributes()[attrRoutingKey].GetStringValue()}, "time": time.Now().Truncate(time.Second),
	}}
	headers["x-first-death-queue"], headers["x-first-death-reason"], headers["x-first-death-exchange"] = aq.name, reason, exchange
	props.Headers, props.Flags = headers, props.Flags|wire.FlagHeaders
	// The expiration that made it expire is dropped, as RabbitMQ does.
	props.Flags &^= wire.FlagExpiration
	props.Expiration = ""
	dl, err := toDMS(&wire.BasicPublish{Exchange: aq.props.DeadLetterExchange, RoutingKey: key}, &props, m.GetBody())
	if err != nil {
		return err
	}
	for _, name := range s.topo.route(project, aq.props.DeadLetterExchange, key, headers) {
		q, err := s.deps.Catalog.ResolveQueue(ctx, project, name)
		if err != nil {
			continue // a dead-letter target that does not exist: dropped, as in RabbitMQ
		}
		// A system move of a message admitted when it was published: the
		// project's send quotas do not apply again (a rate limit would
		// otherwise leave rejected messages redelivered in a loop, and a
		// full storage quota would keep them from their dead-letter queue).
		if _, err := s.deps.Ingest.Publish(ingest.SystemMove(ctx), &ingestv1.PublishRequest{QueueId: q.GetId(), Messages: []*dmsv1.Message{dl}}); err != nil {
			s.logger.Warn("amqp: dead-lettering failed", "queue", aq.name, "to", name, "err", err)
			return err
		}
	}
	return nil
}
