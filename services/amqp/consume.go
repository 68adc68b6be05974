package amqp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"sync"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/delivery"
)

// unlimitedWindow is the credit window of a consumer without a prefetch
// limit (basic.qos 0, or no-ack): RabbitMQ then sends as fast as the
// socket takes; a window bounds what one consumer holds in flight.
const unlimitedWindow = 2000

// pendingDelivery is an unacknowledged delivery of a channel.
type pendingDelivery struct {
	cons   *consumer // nil for basic.get
	aq     *amqpQueue
	handle string
	at     time.Time      // when delivered
	msg    *dmsv1.Message // for dead-lettering through an exchange
}

// consumer is one basic.consume: a delivery session of the queue's AMQP
// group, with credits = the prefetch, driven by a goroutine.
type consumer struct {
	ch    *channel
	tag   string
	aq    *amqpQueue
	noAck bool
	sess  *delivery.Session

	cancel context.CancelFunc
	done   chan struct{}
	closed sync.Once
}

func (ch *channel) qos(m *wire.BasicQos) error {
	// prefetch-size is not supported by RabbitMQ either; global (per
	// channel) is applied per consumer, as the consumers of a channel each
	// have their own session.
	ch.mu.Lock()
	ch.prefetch = int(m.PrefetchCount)
	ch.mu.Unlock()
	ch.ok(false, &wire.BasicQosOk{})
	return nil
}

func (ch *channel) consume(m *wire.BasicConsume) error {
	c := ch.c
	if err := c.authorize(authz.ConsumeMessages, ch.queueName(m.Queue)); err != nil {
		return err
	}
	aq, err := ch.findQueue(c.ctx, m.Queue)
	if err != nil {
		return err
	}
	tag := m.ConsumerTag
	if tag == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		tag = "amq.ctag-" + hex.EncodeToString(b)
	}
	ch.mu.Lock()
	_, dup := ch.consumers[tag]
	prefetch := ch.prefetch
	ch.mu.Unlock()
	if dup {
		return errorf(wire.NotAllowed, "attempt to reuse consumer tag '%s'", trimName(tag))
	}
	credits := prefetch
	if credits == 0 || m.NoAck {
		credits = unlimitedWindow
	}
	sess, err := c.srv.deps.Delivery.OpenSession(c.ctx, aq.q, aq.g, delivery.SessionOptions{
		// Extended while the channel holds them (lease.go).
		Visibility:     leaseVisibility,
		Credits:        credits,
		CreditOnSettle: true,
		MaxBatch:       min(credits, 256),
		OnClose:        delivery.ExpireUnsettled,
	})
	if err != nil {
		return rpcError(err, "opening the consumer")
	}
	ctx, cancel := context.WithCancel(c.ctx)
	cons := &consumer{ch: ch, tag: tag, aq: aq, noAck: m.NoAck, sess: sess, cancel: cancel, done: make(chan struct{})}
	ch.mu.Lock()
	ch.consumers[tag] = cons
	ch.mu.Unlock()
	c.srv.addConsumer(cons)
	c.srv.touch(c.ctx, c.project, aq.name, false)
	// consume-ok goes before the first delivery.
	ch.ok(m.NoWait, &wire.BasicConsumeOk{ConsumerTag: tag})
	go cons.run(ctx)
	return nil
}

// run delivers what the session gives until it is cancelled.
func (cons *consumer) run(ctx context.Context) {
	defer close(cons.done)
	ch, c := cons.ch, cons.ch.c
	for {
		msgs, err := cons.sess.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, delivery.ErrSessionClosed) {
				return
			}
			// The queue is gone (deleted through another node or API), or
			// its delivery cannot be served: tell the client, as
			// consumer_cancel_notify does.
			c.srv.logger.Info("amqp: consumer cancelled", "queue", cons.aq.name, "err", err)
			cons.notifyCancel()
			return
		}
		if ctx.Err() != nil {
			return // unsettled: Close returns them
		}
		var settle []delivery.AckRequest
		now := time.Now()
		for _, m := range msgs {
			if expired(m, cons.aq, now) {
				status := dmsv1.AckStatus_ACK_STATUS_SUCCESS
				if err := c.srv.deadLetter(ctx, c.project, cons.aq, m.GetMessage(), "expired"); err != nil {
					status = dmsv1.AckStatus_ACK_STATUS_FAIL // not lost: delivered again
				}
				settle = append(settle, delivery.AckRequest{Handle: m.GetReceiptHandle(), Status: status})
				continue
			}
			tag := ch.track(cons, cons.aq, m.GetReceiptHandle(), m.GetMessage(), cons.noAck)
			props, exchange, key := fromDMS(m.GetMessage(), cons.aq.name)
			c.sendContent(ch.id, &wire.BasicDeliver{ConsumerTag: cons.tag, DeliveryTag: tag, Redelivered: m.GetDeliveryCount() > 1, Exchange: exchange, RoutingKey: key}, &props, m.GetMessage().GetBody())
			if cons.noAck {
				settle = append(settle, delivery.AckRequest{Handle: m.GetReceiptHandle(), Status: dmsv1.AckStatus_ACK_STATUS_SUCCESS})
			}
		}
		c.flush()
		if len(settle) > 0 {
			if _, _, err := cons.sess.Settle(context.WithoutCancel(ctx), settle, nil); err != nil && !errors.Is(err, delivery.ErrSessionClosed) {
				c.srv.logger.Warn("amqp: settling auto-acked or expired deliveries failed", "queue", cons.aq.name, "err", err)
			}
		}
	}
}

// expired applies the message TTL (per message, the expiration property;
// per queue, x-message-ttl) when a message is about to be delivered, as
// RabbitMQ expires messages at the head of a queue: an expired message is
// settled and not delivered.
func expired(m *dmsv1.ReceivedMessage, aq *amqpQueue, now time.Time) bool {
	ttl := int64(-1)
	if aq.props != nil && aq.props.MessageTTLMs > 0 {
		ttl = aq.props.MessageTTLMs
	}
	if enc := m.GetMessage().GetAttributes()[attrProperties].GetStringValue(); enc != "" {
		props, _, _ := fromDMS(m.GetMessage(), aq.name)
		if props.Flags&wire.FlagExpiration != 0 {
			if ms, err := strconv.ParseInt(props.Expiration, 10, 64); err == nil && (ttl < 0 || ms < ttl) {
				ttl = ms
			}
		}
	}
	if ttl < 0 || m.GetPublishTime() == nil {
		return false
	}
	return now.Sub(m.GetPublishTime().AsTime()) > time.Duration(ttl)*time.Millisecond
}

// track numbers a delivery; deliveries of no-ack consumers are numbered
// but not kept.
func (ch *channel) track(cons *consumer, aq *amqpQueue, handle string, msg *dmsv1.Message, noAck bool) uint64 {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.nextTag++
	if !noAck {
		ch.unacked[ch.nextTag] = &pendingDelivery{cons: cons, aq: aq, handle: handle, at: time.Now(), msg: msg}
	}
	return ch.nextTag
}

// stop ends the consumer: its loop stops and its unsettled deliveries
// return to the queue.
func (cons *consumer) stop(ctx context.Context) {
	cons.closed.Do(func() {
		cons.cancel()
		<-cons.done
		if err := cons.sess.Close(ctx); err != nil {
			cons.ch.c.srv.logger.Warn("amqp: returning unacked deliveries failed", "queue", cons.aq.name, "err", err)
		}
		cons.ch.c.srv.removeConsumer(cons)
	})
}

// notifyCancel sends basic.cancel to the client and forgets the consumer.
func (cons *consumer) notifyCancel() {
	ch := cons.ch
	ch.mu.Lock()
	_, ok := ch.consumers[cons.tag]
	delete(ch.consumers, cons.tag)
	ch.mu.Unlock()
	if ok {
		ch.c.send(ch.id, &wire.BasicCancel{ConsumerTag: cons.tag, NoWait: true})
		ch.c.flush()
	}
}

func (ch *channel) cancel(m *wire.BasicCancel) error {
	ch.mu.Lock()
	cons := ch.consumers[m.ConsumerTag]
	delete(ch.consumers, m.ConsumerTag)
	ch.mu.Unlock()
	if cons != nil {
		// Its unacked deliveries stay acknowledgeable, as in RabbitMQ: the
		// session stays open, without a loop, until the channel closes.
		cons.cancel()
		<-cons.done
		ch.mu.Lock()
		ch.cancelled = append(ch.cancelled, cons)
		ch.mu.Unlock()
		ch.c.srv.removeConsumer(cons)
	}
	ch.ok(m.NoWait, &wire.BasicCancelOk{ConsumerTag: m.ConsumerTag})
	return nil
}

func (ch *channel) get(m *wire.BasicGet) error {
	c := ch.c
	if err := c.authorize(authz.ConsumeMessages, ch.queueName(m.Queue)); err != nil {
		return err
	}
	aq, err := ch.findQueue(c.ctx, m.Queue)
	if err != nil {
		return err
	}
	c.srv.touch(c.ctx, c.project, aq.name, false)
	for {
		msgs, err := c.srv.deps.Delivery.Receive(c.ctx, aq.q, aq.g, delivery.ReceiveOptions{MaxMessages: 1, Visibility: leaseVisibility, AutoAck: m.NoAck}, "", nil)
		if err != nil {
			return rpcError(err, "basic.get")
		}
		if len(msgs) == 0 {
			ch.ok(false, &wire.BasicGetEmpty{})
			return nil
		}
		msg := msgs[0]
		if expired(msg, aq, time.Now()) {
			status := dmsv1.AckStatus_ACK_STATUS_SUCCESS
			if err := c.srv.deadLetter(c.ctx, c.project, aq, msg.GetMessage(), "expired"); err != nil {
				status = dmsv1.AckStatus_ACK_STATUS_FAIL
			}
			if !m.NoAck {
				_, _ = c.srv.deps.Delivery.Ack(c.ctx, aq.q, aq.g, []delivery.AckRequest{{Handle: msg.GetReceiptHandle(), Status: status}}, false)
			}
			continue
		}
		tag := ch.track(nil, aq, msg.GetReceiptHandle(), msg.GetMessage(), m.NoAck)
		props, exchange, key := fromDMS(msg.GetMessage(), aq.name)
		ready, _ := ch.counts(aq)
		c.sendContent(ch.id, &wire.BasicGetOk{DeliveryTag: tag, Redelivered: msg.GetDeliveryCount() > 1, Exchange: exchange, RoutingKey: key, MessageCount: ready}, &props, msg.GetMessage().GetBody())
		c.flush()
		return nil
	}
}

type settleKind int

const (
	settleAck settleKind = iota
	settleNack
)

// settle applies basic.ack, basic.nack and basic.reject. ack → SUCCESS;
// requeue → FAIL (available again at once, the attempt counted toward
// x-delivery-limit); no requeue → SUCCESS (RabbitMQ drops the message)
// unless the queue dead-letters, and then FAIL: DMS has no status that
// dead-letters at once, so the message is retried until the limit and
// then moves to the group's dead letters.
func (ch *channel) settle(tag uint64, multiple bool, kind settleKind, requeue bool) error {
	ch.mu.Lock()
	var picked []*pendingDelivery
	if multiple {
		for t, d := range ch.unacked {
			if tag == 0 || t <= tag {
				picked = append(picked, d)
				delete(ch.unacked, t)
			}
		}
	} else if d, ok := ch.unacked[tag]; ok {
		picked = append(picked, d)
		delete(ch.unacked, tag)
	}
	ch.mu.Unlock()
	if len(picked) == 0 && !(multiple) {
		return preconditionf("unknown delivery tag %d", tag)
	}
	ch.settler.add(picked, kind, requeue)
	return nil
}

// settler applies a channel's acks in the background: a client acks
// without waiting for an answer (AMQP has none), so the read loop must not
// wait for each ack's durable write either. Whatever arrived while one
// write was in progress goes into the next: one state-log write per
// consumer for many acks, however small the client's acks are.
type settler struct {
	ch      *channel
	mu      sync.Mutex
	cond    *sync.Cond
	todo    []settleItem
	added   uint64 // acks added and applied so far, for wait
	applied uint64
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
	once    sync.Once
}

type settleItem struct {
	d      *pendingDelivery
	status dmsv1.AckStatus
	// deadLetter: rejected without requeue from a queue with a dead-letter
	// exchange: published there, then settled.
	deadLetter bool
}

func newSettler(ch *channel) *settler {
	s := &settler{ch: ch, wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	go s.run()
	return s
}

func (s *settler) add(picked []*pendingDelivery, kind settleKind, requeue bool) {
	s.mu.Lock()
	for _, d := range picked {
		it := settleItem{d: d, status: dmsv1.AckStatus_ACK_STATUS_SUCCESS}
		switch {
		case kind != settleNack:
		case requeue:
			it.status = dmsv1.AckStatus_ACK_STATUS_FAIL
		case d.aq.props != nil && d.aq.props.HasDeadLetterExchange:
			it.deadLetter = true
		case d.aq.q.GetDeadLetterEnabled():
			it.status = dmsv1.AckStatus_ACK_STATUS_FAIL
		}
		s.todo = append(s.todo, it)
	}
	s.added += uint64(len(picked))
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// wait returns once the acks added so far are applied: the methods of a
// channel take effect in order, so a queue.declare or basic.get after an
// ack sees it applied, as in RabbitMQ.
func (s *settler) wait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	target := s.added
	for s.applied < target {
		s.cond.Wait()
	}
}

// stop applies what is queued and ends the settler.
func (s *settler) stop() {
	s.once.Do(func() { close(s.quit) })
	<-s.done
}

func (s *settler) run() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
			s.apply()
		case <-s.quit:
			s.apply()
			return
		}
	}
}

func (s *settler) apply() {
	s.mu.Lock()
	todo := s.todo
	s.todo = nil
	s.mu.Unlock()
	if len(todo) == 0 {
		return
	}
	defer func() {
		s.mu.Lock()
		s.applied += uint64(len(todo))
		s.cond.Broadcast()
		s.mu.Unlock()
	}()
	type key struct {
		cons *consumer
		aq   *amqpQueue
	}
	groups := map[key][]delivery.AckRequest{}
	c := s.ch.c
	ctx := context.WithoutCancel(c.ctx)
	for i, it := range todo {
		if it.deadLetter {
			if err := c.srv.deadLetter(ctx, c.project, it.d.aq, it.d.msg, "rejected"); err != nil {
				todo[i].status = dmsv1.AckStatus_ACK_STATUS_FAIL // not lost: delivered again
			}
		}
	}
	for _, it := range todo {
		k := key{cons: it.d.cons}
		if it.d.cons == nil {
			k.aq = it.d.aq
		}
		groups[k] = append(groups[k], delivery.AckRequest{Handle: it.d.handle, Status: it.status})
	}
	for k, acks := range groups {
		var err error
		if k.cons != nil {
			_, _, err = k.cons.sess.Settle(ctx, acks, nil)
		} else {
			_, err = c.srv.deps.Delivery.Ack(ctx, k.aq.q, k.aq.g, acks, false)
		}
		if err != nil && !errors.Is(err, delivery.ErrSessionClosed) {
			// Not applied: the deliveries come back at their visibility
			// deadline, or when the channel closes.
			c.srv.logger.Warn("amqp: settling deliveries failed", "deliveries", len(acks), "err", err)
		}
	}
}

// recover returns every unacked delivery of the channel (basic.recover
// with requeue; without, RabbitMQ requeues too).
func (ch *channel) recover() error {
	ch.mu.Lock()
	unacked := ch.unacked
	ch.unacked = map[uint64]*pendingDelivery{}
	ch.mu.Unlock()
	ctx := context.WithoutCancel(ch.c.ctx)
	for _, d := range unacked {
		req := []delivery.AckRequest{{Handle: d.handle, Status: dmsv1.AckStatus_ACK_STATUS_FAIL}}
		if d.cons != nil {
			_, _, _ = d.cons.sess.Settle(ctx, req, nil)
		} else {
			_, _ = ch.c.srv.deps.Delivery.Ack(ctx, d.aq.q, d.aq.g, req, false)
		}
	}
	ch.ok(false, &wire.BasicRecoverOk{})
	return nil
}

// failGets returns the basic.get deliveries among unacked to their queues.
func (ch *channel) failGets(ctx context.Context, unacked map[uint64]*pendingDelivery) {
	for _, d := range unacked {
		if d.cons != nil {
			continue
		}
		req := []delivery.AckRequest{{Handle: d.handle, Status: dmsv1.AckStatus_ACK_STATUS_FAIL}}
		_, _ = ch.c.srv.deps.Delivery.Ack(ctx, d.aq.q, d.aq.g, req, false)
	}
}

// The server's consumers by queue id: counts for queue.declare-ok and
// cancel notifications when a queue is deleted.
type consumerRegistry struct {
	mu   sync.Mutex
	byQ  map[string]map[*consumer]struct{}
	once sync.Once
}

func (s *Server) addConsumer(cons *consumer) {
	s.consumers.mu.Lock()
	defer s.consumers.mu.Unlock()
	if s.consumers.byQ == nil {
		s.consumers.byQ = map[string]map[*consumer]struct{}{}
	}
	id := cons.aq.q.GetId()
	if s.consumers.byQ[id] == nil {
		s.consumers.byQ[id] = map[*consumer]struct{}{}
	}
	s.consumers.byQ[id][cons] = struct{}{}
}

// removeConsumer forgets a consumer; the last consumer of an auto-delete
// queue deletes it, as in RabbitMQ.
func (s *Server) removeConsumer(cons *consumer) {
	s.consumers.mu.Lock()
	byQ := s.consumers.byQ[cons.aq.q.GetId()]
	_, was := byQ[cons]
	delete(byQ, cons)
	last := was && len(byQ) == 0
	s.consumers.mu.Unlock()
	if last {
		// The period of x-expires starts when the last consumer goes.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(cons.ch.c.ctx), closeOkTimeout)
		s.touch(ctx, cons.ch.c.project, cons.aq.name, true)
		cancel()
	}
	if last && cons.aq.props != nil && cons.aq.props.AutoDelete {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(cons.ch.c.ctx), closeOkTimeout)
		defer cancel()
		if err := s.deleteQueue(ctx, cons.ch.c.project, cons.aq); err != nil {
			s.logger.Warn("amqp: deleting an auto-delete queue failed", "queue", cons.aq.name, "err", err)
		}
	}
}

func (s *Server) consumerCount(queueID string) int {
	s.consumers.mu.Lock()
	defer s.consumers.mu.Unlock()
	return len(s.consumers.byQ[queueID])
}

// cancelConsumersOf stops the consumers of a deleted queue and tells their
// clients (basic.cancel).
func (s *Server) cancelConsumersOf(queueID string) {
	s.consumers.mu.Lock()
	var list []*consumer
	for cons := range s.consumers.byQ[queueID] {
		list = append(list, cons)
	}
	s.consumers.mu.Unlock()
	for _, cons := range list {
		cons.cancel()
		cons.notifyCancel()
	}
}
