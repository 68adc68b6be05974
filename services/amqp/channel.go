package amqp

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/message"
)

// channel is one AMQP channel of a connection. Its methods are handled in
// the connection's read loop, in order; publishes go through the channel's
// publish pipeline (publish.go) and deliveries come from its consumers'
// goroutines (consume.go).
type channel struct {
	c  *conn
	id uint16

	// closing is set once the server sent channel.close: until the client's
	// close-ok every other frame is dropped, as the spec says.
	closing bool

	// Content being assembled: a basic.publish, then its header and body.
	publishing *wire.BasicPublish
	header     wire.Header
	body       []byte

	confirm   bool
	lastQueue string // the last queue declared: what an empty queue name means
	pub       *publisher
	settler   *settler
	// renewQuit ends the lease renewal (lease.go); renewDone says it ended.
	renewQuit chan struct{}
	renewDone chan struct{}

	mu        sync.Mutex
	prefetch  int // basic.qos prefetch-count for new consumers; 0 = no limit
	consumers map[string]*consumer
	nextTag   uint64
	unacked   map[uint64]*pendingDelivery
	cancelled []*consumer // basic.cancel'ed: their sessions close with the channel
}

func newChannel(c *conn, id uint16) *channel {
	ch := &channel{c: c, id: id, consumers: map[string]*consumer{}, unacked: map[uint64]*pendingDelivery{}}
	ch.pub = newPublisher(ch)
	ch.settler = newSettler(ch)
	ch.renewQuit, ch.renewDone = make(chan struct{}), make(chan struct{})
	go ch.renewLoop(ch.renewQuit, ch.renewDone)
	return ch
}

// frame handles one frame of the channel.
func (ch *channel) frame(f wire.Frame) error {
	if ch.closing {
		if f.Type == wire.FrameMethod {
			if m, err := wire.ParseMethod(f.Payload); err == nil {
				switch m.(type) {
				case *wire.ChannelCloseOk:
					ch.forget()
				case *wire.ChannelClose:
					ch.forget()
					ch.c.send(ch.id, &wire.ChannelCloseOk{})
					ch.c.flush()
				}
			}
		}
		return nil
	}
	switch f.Type {
	case wire.FrameMethod:
		if ch.publishing != nil {
			return errorf(wire.UnexpectedFrame, "a method frame on channel %d while the content of basic.publish was expected", ch.id)
		}
		m, err := wire.ParseMethod(f.Payload)
		if err != nil {
			return methodError(err)
		}
		switch m.(type) {
		case *wire.BasicAck, *wire.BasicNack, *wire.BasicReject, *wire.BasicPublish:
		default:
			ch.settler.wait()
		}
		err = ch.method(m)
		return ch.exception(err, m)
	case wire.FrameHeader:
		if ch.publishing == nil || ch.header.Class != 0 {
			return errorf(wire.UnexpectedFrame, "a content header on channel %d without a basic.publish before it", ch.id)
		}
		h, err := wire.ParseHeader(f.Payload)
		if err != nil {
			return errorf(wire.FrameError, "malformed content header: %v", err)
		}
		if h.Class != wire.ClassBasic {
			return errorf(wire.FrameError, "content header of class %d, expected %d", h.Class, wire.ClassBasic)
		}
		// The message limit of DMS (512 KiB) bounds what is buffered.
		if h.BodySize > message.MaxBytes {
			ch.publishing, ch.header, ch.body = nil, wire.Header{}, nil
			// RabbitMQ closes the channel for a message above its
			// max_message_size with PRECONDITION_FAILED; the body frames
			// that follow are dropped by the closing channel.
			return ch.exception(errorf(wire.PreconditionFailed, "message size %d is larger than the limit %d", h.BodySize, message.MaxBytes), &wire.BasicPublish{})
		}
		ch.header = h
		ch.body = make([]byte, 0, h.BodySize)
		if h.BodySize == 0 {
			return ch.exception(ch.published(), &wire.BasicPublish{})
		}
		return nil
	case wire.FrameBody:
		if ch.publishing == nil || ch.header.Class == 0 {
			return errorf(wire.UnexpectedFrame, "a content body on channel %d without a content header before it", ch.id)
		}
		if uint64(len(ch.body)+len(f.Payload)) > ch.header.BodySize {
			return errorf(wire.FrameError, "content body longer than the %d bytes its header announced", ch.header.BodySize)
		}
		ch.body = append(ch.body, f.Payload...)
		if uint64(len(ch.body)) == ch.header.BodySize {
			return ch.exception(ch.published(), &wire.BasicPublish{})
		}
		return nil
	default:
		return errorf(wire.FrameError, "unknown frame type %d", f.Type)
	}
}

// exception turns a soft error into channel.close and passes a hard one on
// to close the connection.
func (ch *channel) exception(err error, m wire.Method) error {
	if err == nil {
		return nil
	}
	ae, ok := err.(*amqpError)
	if !ok {
		ae = errorf(wire.InternalError, "%v", err)
	}
	if ae.class == 0 && m != nil {
		ae.class, ae.method = m.ID()
	}
	if v := ch.c.vhost; v != "/" && v != "" {
		// The texts name the vhost as RabbitMQ's do; they are made without
		// the connection at hand, as "/".
		ae.text = strings.ReplaceAll(ae.text, "in vhost '/'", "in vhost '"+trimName(v)+"'")
	}
	if !wire.SoftError(ae.code) {
		return ae
	}
	ch.closing = true
	ch.shutdown()
	ch.c.srv.logger.Debug("amqp: closing channel", "channel", ch.id, "code", ae.code, "text", ae.text)
	ch.c.send(ch.id, &wire.ChannelClose{ReplyCode: ae.code, ReplyText: replyText(ae.code, ae.text), ClassId: ae.class, MethodId: ae.method})
	ch.c.flush()
	return nil
}

// forget removes a closed channel from its connection.
func (ch *channel) forget() {
	ch.c.chmu.Lock()
	if ch.c.channels[ch.id] == ch {
		delete(ch.c.channels, ch.id)
	}
	ch.c.chmu.Unlock()
}

// close ends the channel as the client or the connection closing does.
func (ch *channel) close() { ch.shutdown() }

// shutdown stops the consumers (their unacked deliveries return to their
// queues at once, as RabbitMQ returns them) and waits for the publishes in
// flight, whose confirms are then not sent.
func (ch *channel) shutdown() {
	ch.pub.stop()
	// Acks first: what the client acked must not come back.
	ch.settler.stop()
	select {
	case <-ch.renewQuit:
	default:
		close(ch.renewQuit)
	}
	<-ch.renewDone
	ch.mu.Lock()
	consumers := ch.consumers
	ch.consumers = map[string]*consumer{}
	unacked := ch.unacked
	ch.unacked = map[uint64]*pendingDelivery{}
	cancelled := ch.cancelled
	ch.cancelled = nil
	ch.mu.Unlock()
	ctx := context.WithoutCancel(ch.c.ctx)
	for _, cons := range consumers {
		cons.stop(ctx)
	}
	for _, cons := range cancelled {
		cons.stop(ctx)
	}
	// Deliveries of basic.get have no session: fail them by handle.
	ch.failGets(ctx, unacked)
	ch.publishing, ch.header, ch.body = nil, wire.Header{}, nil
}

func (ch *channel) method(m wire.Method) error {
	switch m := m.(type) {
	case *wire.ChannelClose:
		ch.shutdown()
		ch.forget()
		ch.c.send(ch.id, &wire.ChannelCloseOk{})
		ch.c.flush()
		return nil
	case *wire.ChannelCloseOk:
		return nil
	case *wire.ChannelOpen:
		return errorf(wire.ChannelError, "channel %d is already open", ch.id)
	case *wire.ChannelFlow:
		if !m.Active {
			// As RabbitMQ: consumers are paced by basic.qos instead.
			return errorf(wire.NotImplemented, "active=false is not supported; use basic.qos to pace deliveries")
		}
		ch.c.send(ch.id, &wire.ChannelFlowOk{Active: true})
		ch.c.flush()
		return nil
	case *wire.ChannelFlowOk:
		return nil

	case *wire.ExchangeDeclare:
		return ch.exchangeDeclare(m)
	case *wire.ExchangeDelete:
		return ch.exchangeDelete(m)
	case *wire.ExchangeBind:
		return ch.exchangeBind(m, false)
	case *wire.ExchangeUnbind:
		return ch.exchangeBind((*wire.ExchangeBind)(m), true)
	case *wire.QueueDeclare:
		return ch.queueDeclare(m)
	case *wire.QueueBind:
		return ch.queueBind(m)
	case *wire.QueueUnbind:
		return ch.queueUnbind(m)
	case *wire.QueuePurge:
		return ch.queuePurge(m)
	case *wire.QueueDelete:
		return ch.queueDelete(m)

	case *wire.BasicQos:
		return ch.qos(m)
	case *wire.BasicConsume:
		return ch.consume(m)
	case *wire.BasicCancel:
		return ch.cancel(m)
	case *wire.BasicPublish:
		ch.publishing = m
		ch.header = wire.Header{}
		return nil
	case *wire.BasicGet:
		return ch.get(m)
	case *wire.BasicAck:
		return ch.settle(m.DeliveryTag, m.Multiple, settleAck, false)
	case *wire.BasicNack:
		return ch.settle(m.DeliveryTag, m.Multiple, settleNack, m.Requeue)
	case *wire.BasicReject:
		return ch.settle(m.DeliveryTag, false, settleNack, m.Requeue)
	case *wire.BasicRecover:
		return ch.recover()
	case *wire.BasicRecoverAsync:
		return ch.recover()

	case *wire.ConfirmSelect:
		ch.confirm = true
		if !m.Nowait {
			ch.c.send(ch.id, &wire.ConfirmSelectOk{})
			ch.c.flush()
		}
		return nil
	case *wire.TxSelect, *wire.TxCommit, *wire.TxRollback:
		return errorf(wire.NotImplemented, "transactions (tx.*) are not supported; use publisher confirms")
	default:
		return errorf(wire.CommandInvalid, "%s is not a method a client sends", m.Name())
	}
}

// ok sends a method's reply unless the client asked for none.
func (ch *channel) ok(nowait bool, m wire.Method) {
	if nowait {
		return
	}
	ch.c.send(ch.id, m)
	ch.c.flush()
}

func notFound(kind, name string) *amqpError {
	return errorf(wire.NotFound, "no %s '%s' in vhost '/'", kind, trimName(name))
}

func preconditionf(format string, args ...any) *amqpError {
	return &amqpError{code: wire.PreconditionFailed, text: fmt.Sprintf(format, args...)}
}
