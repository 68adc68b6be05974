package amqp

import (
	"context"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/delivery"
)

// lengthLimit is x-max-length of a queue being published to: it counts
// the messages ready for the queue's AMQP group, as RabbitMQ counts ready
// messages (not the unacked ones). Nil when the queue has no limit.
type lengthLimit struct {
	aq *amqpQueue
}

// lengthLimit finds the limit of a queue by id; nil when none.
func (s *Server) lengthLimit(ctx context.Context, project, queueID string) *lengthLimit {
	q, err := s.deps.Catalog.QueueByID(ctx, queueID)
	if err != nil {
		return nil
	}
	props := s.topo.queue(project, q.GetDisplayName())
	if props == nil || props.MaxLength <= 0 {
		return nil
	}
	g, err := s.deps.Catalog.ResolveGroup(ctx, q, groupName)
	if err != nil {
		return nil
	}
	return &lengthLimit{aq: &amqpQueue{name: q.GetDisplayName(), q: q, g: g, props: props}}
}

func (l *lengthLimit) ready(ctx context.Context, s *Server) (int64, bool) {
	stats, _, err := s.deps.Delivery.Stats(ctx, l.aq.q, l.aq.g)
	if err != nil {
		return 0, false
	}
	return stats.GetAvailableMessages(), true
}

// refuse returns how many of n messages x-overflow reject-publish refuses.
func (l *lengthLimit) refuse(ctx context.Context, s *Server, n int) int {
	if l == nil || (l.aq.props.Overflow != "reject-publish" && l.aq.props.Overflow != "reject-publish-dlx") {
		return 0
	}
	ready, ok := l.ready(ctx, s)
	if !ok {
		return 0
	}
	room := max(l.aq.props.MaxLength-ready, 0)
	return max(n-int(min(room, int64(n))), 0)
}

// dropHead applies x-overflow drop-head (RabbitMQ's default) after a
// publish: the oldest ready messages beyond the limit leave the queue,
// through its dead-letter exchange if it has one (reason maxlen).
func (l *lengthLimit) dropHead(ctx context.Context, s *Server, project string) {
	if l == nil || (l.aq.props.Overflow != "" && l.aq.props.Overflow != "drop-head") {
		return
	}
	ready, ok := l.ready(ctx, s)
	if !ok || ready <= l.aq.props.MaxLength {
		return
	}
	excess := int(min(ready-l.aq.props.MaxLength, delivery.MaxReceiveMessages))
	msgs, err := s.deps.Delivery.Receive(ctx, l.aq.q, l.aq.g, delivery.ReceiveOptions{MaxMessages: excess, Visibility: leaseVisibility}, "", nil)
	if err != nil {
		s.logger.Warn("amqp: x-max-length: taking the head failed", "queue", l.aq.name, "err", err)
		return
	}
	acks := make([]delivery.AckRequest, 0, len(msgs))
	for _, m := range msgs {
		status := dmsv1.AckStatus_ACK_STATUS_SUCCESS
		if err := s.deadLetter(ctx, project, l.aq, m.GetMessage(), "maxlen"); err != nil {
			status = dmsv1.AckStatus_ACK_STATUS_FAIL
		}
		acks = append(acks, delivery.AckRequest{Handle: m.GetReceiptHandle(), Status: status})
	}
	if _, err := s.deps.Delivery.Ack(ctx, l.aq.q, l.aq.g, acks, false); err != nil {
		s.logger.Warn("amqp: x-max-length: dropping the head failed", "queue", l.aq.name, "err", err)
	}
}
