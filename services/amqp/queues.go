package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
)

// groupName is the DMS consumer group every AMQP consumer of a queue takes
// messages from: an AMQP queue hands each message to one consumer, as one
// DMS group does. DMS consumers that join this group share the messages
// with the AMQP ones; other DMS groups get their own copy.
const groupName = "amqp"

// rpcError maps an error of a role to an AMQP exception.
func rpcError(err error, what string) *amqpError {
	var ae *amqpError
	if errors.As(err, &ae) {
		return ae
	}
	switch rpcstatus.Reason(rpcstatus.Error(err)) {
	case errs.ErrQueueNotFound.Reason, errs.ErrGroupNotFound.Reason:
		return errorf(wire.NotFound, "%s: %v", what, err)
	case errs.ErrQueueQuotaExceeded.Reason, errs.ErrGroupQuotaExceeded.Reason:
		return errorf(wire.ResourceError, "%s: %v", what, err)
	case errs.ErrQueueNameInvalid.Reason, errs.ErrQueueNameLengthInvalid.Reason, errs.ErrRequestInvalid.Reason:
		return errorf(wire.PreconditionFailed, "%s: %v", what, err)
	case errs.ErrNotLeader.Reason:
		// AMQP 0-9-1 has no redirect: the channel closes (the connection
		// stays) with the node that serves the queue's consumers named.
		return errorf(wire.ResourceLocked, "%s: %v; connect to that node's AMQP listener", what, err)
	case errs.ErrUnavailable.Reason:
		return errorf(wire.ResourceLocked, "%s: %v; retry", what, err)
	}
	return errorf(wire.InternalError, "%s: %v", what, err)
}

// amqpQueue is a resolved queue: its DMS record, the group AMQP consumes
// from and its AMQP record.
type amqpQueue struct {
	name  string
	q     *metadatav1.QueueRecord
	g     *metadatav1.GroupRecord
	props *queueRec
}

// queueName is the queue a method names: an empty name is the last queue
// declared on the channel.
func (ch *channel) queueName(name string) string {
	if name == "" {
		return ch.lastQueue
	}
	return name
}

// findQueue resolves an AMQP queue; ErrQueueNotFound becomes NOT_FOUND.
func (ch *channel) findQueue(ctx context.Context, name string) (*amqpQueue, error) {
	c := ch.c
	if name == "" {
		// The spec: an empty name is the last queue declared on the channel.
		if name = ch.lastQueue; name == "" {
			return nil, errorf(wire.NotFound, "no queue named, and no queue declared on this channel before")
		}
	}
	q, err := c.srv.deps.Catalog.ResolveQueue(ctx, c.project, name)
	if err != nil {
		if catalog.IsNotFound(err) {
			return nil, notFound("queue", name)
		}
		return nil, rpcError(err, "finding queue")
	}
	g, err := c.srv.deps.Catalog.ResolveGroup(ctx, q, groupName)
	if catalog.IsNotFound(err) {
		// A queue made through another API: AMQP's group is made on first use.
		g, err = ch.createGroup(ctx, q)
	}
	if err != nil {
		return nil, rpcError(err, "finding the queue's consumer group")
	}
	return &amqpQueue{name: name, q: q, g: g, props: c.srv.topo.queue(c.project, name)}, nil
}

func (ch *channel) createGroup(ctx context.Context, q *metadatav1.QueueRecord) (*metadatav1.GroupRecord, error) {
	c := ch.c
	_, err := c.srv.deps.Queues.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{
		Parent: catalog.QueueResource(c.project, q.GetId()), Group: &dmsv1.ConsumerGroup{DisplayName: groupName}})
	if err != nil && rpcstatus.Reason(rpcstatus.Error(err)) != errs.ErrGroupAlreadyExists.Reason {
		return nil, err
	}
	return c.srv.deps.Catalog.ResolveGroup(ctx, q, groupName)
}

// queueArgs reads the queue arguments DMS honours.
func queueArgs(args wire.Table) (*queueRec, *dmsv1.Queue, error) {
	rec := &queueRec{}
	dq := &dmsv1.Queue{Mode: dmsv1.QueueMode_QUEUE_MODE_AMQP,
		// One partition: an AMQP queue keeps one order, as RabbitMQ's do.
		PartitionCount: 1}
	for k, v := range args {
		switch k {
		case "x-message-ttl":
			n, ok := intArg(v)
			if !ok || n < 0 {
				return nil, nil, preconditionf("invalid arg 'x-message-ttl' for queue: %v must be a non-negative integer (ms)", v)
			}
			rec.MessageTTLMs = n
		case "x-max-length":
			n, ok := intArg(v)
			if !ok || n < 0 {
				return nil, nil, preconditionf("invalid arg 'x-max-length' for queue: %v must be a non-negative integer", v)
			}
			rec.MaxLength = n
		case "x-dead-letter-exchange":
			s, ok := v.(string)
			if !ok {
				return nil, nil, preconditionf("invalid arg 'x-dead-letter-exchange' for queue: %v must be a string", v)
			}
			rec.DeadLetterExchange, rec.HasDeadLetterExchange = s, true
		case "x-dead-letter-routing-key":
			s, ok := v.(string)
			if !ok {
				return nil, nil, preconditionf("invalid arg 'x-dead-letter-routing-key' for queue: %v must be a string", v)
			}
			rec.DeadLetterRoutingKey = s
		case "x-delivery-limit":
			n, ok := intArg(v)
			if !ok || n < 0 || n > 1<<20 {
				return nil, nil, preconditionf("invalid arg 'x-delivery-limit' for queue: %v must be a non-negative integer", v)
			}
			// RabbitMQ counts redeliveries: a limit of n allows n+1 deliveries.
			dq.MaxConsumeCount = int32(n) + 1
			dq.DeadLetterEnabled = true
		case "x-queue-type":
			s, _ := v.(string)
			if s != "classic" && s != "quorum" {
				return nil, nil, preconditionf("invalid arg 'x-queue-type' for queue: %q; DMS takes classic or quorum (every queue is durable and replicated), not streams", s)
			}
		case "x-overflow":
			s, _ := v.(string)
			switch s {
			case "drop-head", "reject-publish", "reject-publish-dlx":
				rec.Overflow = s
			default:
				return nil, nil, preconditionf("invalid arg 'x-overflow' for queue: %q; drop-head, reject-publish or reject-publish-dlx", s)
			}
		case "x-expires":
			n, ok := intArg(v)
			if !ok || n <= 0 {
				return nil, nil, preconditionf("invalid arg 'x-expires' for queue: %v must be a positive integer (ms)", v)
			}
			rec.ExpiresMs = n
		case "x-max-length-bytes", "x-max-priority", "x-queue-mode", "x-single-active-consumer", "x-queue-master-locator", "x-queue-leader-locator":
			// Accepted and kept; not enforced (see the package doc).
		}
	}
	return rec, dq, nil
}

func intArg(v any) (int64, bool) {
	switch v := v.(type) {
	case int8:
		return int64(v), true
	case uint8:
		return int64(v), true
	case int16:
		return int64(v), true
	case uint16:
		return int64(v), true
	case int32:
		return int64(v), true
	case uint32:
		return int64(v), true
	case int64:
		return v, true
	case uint64:
		return int64(v), v < 1<<63
	}
	return 0, false
}

func (ch *channel) queueDeclare(m *wire.QueueDeclare) error {
	c := ch.c
	ctx := c.ctx
	name := m.Queue
	if name == "" {
		if m.Passive {
			return notFound("queue", name)
		}
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		// RabbitMQ's are amq.gen-…; DMS names take no dots.
		name = "amq_gen-" + hex.EncodeToString(b)
	} else if strings.HasPrefix(name, "amq.") && !m.Passive {
		return errorf(wire.AccessRefused, "queue name '%s' contains reserved prefix 'amq.*'", trimName(name))
	}
	if err := catalog.ValidateQueueDisplayName(name); err != nil {
		return preconditionf("queue name '%s' is not a DMS queue name: %v", trimName(name), err)
	}
	if m.Passive {
		if err := c.authorize(authz.GetQueue, name); err != nil {
			return err
		}
		aq, err := ch.findQueue(ctx, name)
		if err != nil {
			return err
		}
		c.srv.touch(ctx, c.project, name, false)
		return ch.declareOk(m.NoWait, aq)
	}
	if err := c.authorize(authz.CreateQueue, name); err != nil {
		return err
	}
	rec, dq, err := queueArgs(m.Arguments)
	if err != nil {
		return err
	}
	rec.Durable, rec.AutoDelete = m.Durable, m.AutoDelete
	rec.LastUsedMs = time.Now().UnixMilli()
	rec.Args = map[string]any{}
	for k, v := range m.Arguments {
		rec.Args[k] = v
	}
	q, err := c.srv.deps.Catalog.ResolveQueue(ctx, c.project, name)
	switch {
	case catalog.IsNotFound(err):
		dq.DisplayName = name
		resp, cerr := c.srv.deps.Queues.CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: catalog.ProjectResource(c.project), Queue: dq})
		if cerr != nil && rpcstatus.Reason(rpcstatus.Error(cerr)) != errs.ErrQueueAlreadyExists.Reason {
			return rpcError(cerr, "creating queue")
		}
		if cerr == nil {
			c.srv.logger.Info("amqp: queue declared", "project", c.project, "queue", name, "id", resp.GetQueue().GetId())
			if err := c.srv.topo.put(ctx, queueKey(c.project, name), rec); err != nil {
				return rpcError(err, "keeping the queue's arguments")
			}
		}
	case err != nil:
		return rpcError(err, "finding queue")
	default:
		if q.GetMode() == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA || q.GetMode() == dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT {
			return preconditionf("queue '%s' is a Kafka topic (mode %s)", trimName(name), q.GetMode())
		}
		if old := c.srv.topo.queue(c.project, name); old != nil && old.Durable != m.Durable {
			return preconditionf("inequivalent arg 'durable' for queue '%s' in vhost '/': received '%v' but current is '%v'", trimName(name), m.Durable, old.Durable)
		} else if old == nil {
			// A queue made through another API: keep what AMQP says of it.
			if err := c.srv.topo.put(ctx, queueKey(c.project, name), rec); err != nil {
				return rpcError(err, "keeping the queue's arguments")
			}
		}
	}
	aq, err := ch.findQueue(ctx, name)
	if err != nil {
		return err
	}
	// A redeclare renews an x-expires lease.
	c.srv.touch(ctx, c.project, name, false)
	if m.Exclusive {
		c.addExclusive(name)
	}
	return ch.declareOk(m.NoWait, aq)
}

func (ch *channel) declareOk(nowait bool, aq *amqpQueue) error {
	ch.lastQueue = aq.name
	if nowait {
		return nil
	}
	ready, consumers := ch.counts(aq)
	ch.ok(false, &wire.QueueDeclareOk{Queue: aq.name, MessageCount: ready, ConsumerCount: consumers})
	return nil
}

// counts returns a queue's messages ready for its AMQP group and the
// consumers of this node.
func (ch *channel) counts(aq *amqpQueue) (ready, consumers uint32) {
	stats, _, err := ch.c.srv.deps.Delivery.Stats(ch.c.ctx, aq.q, aq.g)
	if err == nil {
		ready = uint32(min(stats.GetAvailableMessages(), 1<<32-1))
	}
	return ready, uint32(ch.c.srv.consumerCount(aq.q.GetId()))
}

func (ch *channel) queueBind(m *wire.QueueBind) error {
	c := ch.c
	if err := c.authorize(authz.UpdateQueue, ch.queueName(m.Queue)); err != nil {
		return err
	}
	ex, ok := c.srv.topo.exchange(c.project, m.Exchange)
	if !ok {
		return notFound("exchange", m.Exchange)
	}
	if m.Exchange == "" {
		return errorf(wire.AccessRefused, "operation not permitted on the default exchange")
	}
	aq, err := ch.findQueue(c.ctx, m.Queue)
	if err != nil {
		return err
	}
	b := &bindingRec{Exchange: m.Exchange, Queue: aq.name, Key: m.RoutingKey}
	if ex.Type == typeHeaders && len(m.Arguments) > 0 {
		b.Args = map[string]any(m.Arguments)
	}
	if err := c.srv.topo.put(c.ctx, bindingKey(c.project, b), b); err != nil {
		return rpcError(err, "keeping the binding")
	}
	ch.ok(m.NoWait, &wire.QueueBindOk{})
	return nil
}

func (ch *channel) queueUnbind(m *wire.QueueUnbind) error {
	c := ch.c
	if err := c.authorize(authz.UpdateQueue, ch.queueName(m.Queue)); err != nil {
		return err
	}
	ex, ok := c.srv.topo.exchange(c.project, m.Exchange)
	if !ok {
		return notFound("exchange", m.Exchange)
	}
	aq, err := ch.findQueue(c.ctx, m.Queue)
	if err != nil {
		return err
	}
	b := &bindingRec{Exchange: m.Exchange, Queue: aq.name, Key: m.RoutingKey}
	if ex.Type == typeHeaders && len(m.Arguments) > 0 {
		b.Args = map[string]any(m.Arguments)
	}
	if err := c.srv.topo.deleteKey(c.ctx, bindingKey(c.project, b), false); err != nil {
		return rpcError(err, "removing the binding")
	}
	ch.ok(false, &wire.QueueUnbindOk{})
	return nil
}

// queuePurge moves the AMQP group past everything stored: DMS keeps the
// messages for its other groups and its retention.
func (ch *channel) queuePurge(m *wire.QueuePurge) error {
	if err := ch.c.authorize(authz.ConsumeMessages, ch.queueName(m.Queue)); err != nil {
		return err
	}
	aq, err := ch.findQueue(ch.c.ctx, m.Queue)
	if err != nil {
		return err
	}
	ready, _ := ch.counts(aq)
	if _, err := ch.c.srv.deps.Delivery.Seek(ch.c.ctx, aq.q, aq.g, delivery.SeekTarget{Position: dmsv1.SeekPosition_SEEK_POSITION_LATEST}); err != nil {
		return rpcError(err, "purging")
	}
	ch.ok(m.NoWait, &wire.QueuePurgeOk{MessageCount: ready})
	return nil
}

func (ch *channel) queueDelete(m *wire.QueueDelete) error {
	c := ch.c
	if err := c.authorize(authz.DeleteQueue, ch.queueName(m.Queue)); err != nil {
		return err
	}
	aq, err := ch.findQueue(c.ctx, m.Queue)
	if err != nil {
		return err
	}
	ready, consumers := ch.counts(aq)
	if m.IfUnused && consumers > 0 {
		return preconditionf("queue '%s' in vhost '/' in use", trimName(m.Queue))
	}
	if m.IfEmpty && ready > 0 {
		return preconditionf("queue '%s' in vhost '/' is not empty", trimName(m.Queue))
	}
	if err := c.srv.deleteQueue(c.ctx, c.project, aq); err != nil {
		return err
	}
	ch.ok(m.NoWait, &wire.QueueDeleteOk{MessageCount: ready})
	return nil
}

// deleteQueue deletes the DMS queue, its AMQP record and bindings, and
// cancels its consumers on this node (consumer_cancel_notify).
func (s *Server) deleteQueue(ctx context.Context, project string, aq *amqpQueue) error {
	_, err := s.deps.Queues.DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: catalog.QueueResource(project, aq.q.GetId())})
	if err != nil && rpcstatus.Reason(rpcstatus.Error(err)) != errs.ErrQueueNotFound.Reason {
		return rpcError(err, "deleting queue")
	}
	if err := s.topo.deleteQueue(ctx, project, aq.name); err != nil {
		return rpcError(err, "deleting the queue's bindings")
	}
	s.cancelConsumersOf(aq.q.GetId())
	return nil
}

func (ch *channel) exchangeDeclare(m *wire.ExchangeDeclare) error {
	c := ch.c
	action := authz.CreateQueue
	if m.Passive {
		action = authz.ListQueues
	}
	if err := c.authorize(action, ""); err != nil {
		return err
	}
	if typ, builtin := builtinExchanges[m.Exchange]; builtin {
		if !m.Passive && m.Type != typ {
			return preconditionf("inequivalent arg 'type' for exchange '%s' in vhost '/': received '%s' but current is '%s'", m.Exchange, m.Type, typ)
		}
		ch.ok(m.NoWait, &wire.ExchangeDeclareOk{})
		return nil
	}
	old, exists := c.srv.topo.exchange(c.project, m.Exchange)
	if m.Passive {
		if !exists {
			return notFound("exchange", m.Exchange)
		}
		ch.ok(m.NoWait, &wire.ExchangeDeclareOk{})
		return nil
	}
	if strings.HasPrefix(m.Exchange, "amq.") {
		return errorf(wire.AccessRefused, "exchange name '%s' contains reserved prefix 'amq.*'", trimName(m.Exchange))
	}
	switch m.Type {
	case typeDirect, typeFanout, typeTopic, typeHeaders:
	default:
		return errorf(wire.CommandInvalid, "unknown exchange type '%s'", trimName(m.Type))
	}
	if exists {
		if old.Type != m.Type {
			return preconditionf("inequivalent arg 'type' for exchange '%s' in vhost '/': received '%s' but current is '%s'", trimName(m.Exchange), m.Type, old.Type)
		}
		ch.ok(m.NoWait, &wire.ExchangeDeclareOk{})
		return nil
	}
	rec := &exchangeRec{Type: m.Type, Durable: m.Durable, AutoDelete: m.AutoDelete, Internal: m.Internal}
	if err := c.srv.topo.put(c.ctx, exchangeKey(c.project, m.Exchange), rec); err != nil {
		return rpcError(err, "keeping the exchange")
	}
	ch.ok(m.NoWait, &wire.ExchangeDeclareOk{})
	return nil
}

// exchangeBind binds a destination exchange to a source exchange (a
// RabbitMQ extension): what the source routes by the binding goes on
// through the destination.
func (ch *channel) exchangeBind(m *wire.ExchangeBind, unbind bool) error {
	c := ch.c
	if err := c.authorize(authz.UpdateQueue, ""); err != nil {
		return err
	}
	src, ok := c.srv.topo.exchange(c.project, m.Source)
	if !ok {
		return notFound("exchange", m.Source)
	}
	if _, ok := c.srv.topo.exchange(c.project, m.Destination); !ok {
		return notFound("exchange", m.Destination)
	}
	if m.Source == "" || m.Destination == "" {
		return errorf(wire.AccessRefused, "operation not permitted on the default exchange")
	}
	b := &bindingRec{Exchange: m.Source, Queue: m.Destination, Key: m.RoutingKey, ToExchange: true}
	if src.Type == typeHeaders && len(m.Arguments) > 0 {
		b.Args = map[string]any(m.Arguments)
	}
	var err error
	if unbind {
		err = c.srv.topo.deleteKey(c.ctx, bindingKey(c.project, b), false)
	} else {
		err = c.srv.topo.put(c.ctx, bindingKey(c.project, b), b)
	}
	if err != nil {
		return rpcError(err, "keeping the binding")
	}
	if unbind {
		ch.ok(m.NoWait, &wire.ExchangeUnbindOk{})
	} else {
		ch.ok(m.NoWait, &wire.ExchangeBindOk{})
	}
	return nil
}

func (ch *channel) exchangeDelete(m *wire.ExchangeDelete) error {
	c := ch.c
	if err := c.authorize(authz.DeleteQueue, ""); err != nil {
		return err
	}
	if _, builtin := builtinExchanges[m.Exchange]; builtin {
		return errorf(wire.AccessRefused, "operation not permitted on exchange '%s'", m.Exchange)
	}
	if _, ok := c.srv.topo.exchange(c.project, m.Exchange); !ok {
		// RabbitMQ answers delete-ok for an exchange that does not exist.
		ch.ok(m.NoWait, &wire.ExchangeDeleteOk{})
		return nil
	}
	if m.IfUnused && c.srv.topo.hasBindings(c.project, m.Exchange) {
		return preconditionf("exchange '%s' in vhost '/' in use", trimName(m.Exchange))
	}
	if err := c.srv.topo.deleteExchange(c.ctx, c.project, m.Exchange); err != nil {
		return rpcError(err, "deleting the exchange")
	}
	ch.ok(m.NoWait, &wire.ExchangeDeleteOk{})
	return nil
}
