package amqp

import (
	"context"
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"time"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/amqp/wire"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/ingest"
	"github.com/opendms/dms/services/message"
)

// Attributes under which a message published over AMQP keeps what AMQP
// says of it. amqp.properties holds the content properties exactly as sent
// (their wire encoding, base64), so that AMQP consumers get them back
// unchanged; the headers are attributes of their own too, and the
// properties DMS consumers read most, so that a gRPC consumer sees them.
const (
	attrProperties = "amqp.properties"
	attrExchange   = "amqp.exchange"
	attrRoutingKey = "amqp.routing-key"
	attrPrefix     = "amqp."
	// tagsHeader carries DMS tags over AMQP, comma-separated.
	tagsHeader = "dms-tags"
)

// maxPublishBatch is the most messages one ingest call carries: the
// native API's batch limit.
const maxPublishBatch = 1000

// published is called when a publish's content is complete: it routes the
// message and hands it to the publish pipeline.
func (ch *channel) published() error {
	pub, header, body := ch.publishing, ch.header, ch.body
	ch.publishing, ch.header, ch.body = nil, wire.Header{}, nil
	c := ch.c
	ex, ok := c.srv.topo.exchange(c.project, pub.Exchange)
	if !ok {
		return notFound("exchange", pub.Exchange)
	}
	if ex.Internal {
		return errorf(wire.AccessRefused, "cannot publish to internal exchange '%s' in vhost '/'", trimName(pub.Exchange))
	}
	var seq uint64
	if ch.confirm {
		ch.pub.seq++
		seq = ch.pub.seq
	}
	if limit := c.srv.deps.Catalog.ProjectQuotas(c.project).GetMaxMessageBytes(); limit > 0 && len(body) > int(limit) {
		// As RabbitMQ answers a message over max_message_size: the
		// channel closes. The project's quota (message.Size, with the
		// properties) is checked again where the batch is stored, which
		// nacks a message whose body fits but whose properties do not.
		return preconditionf("message size %d is larger than configured max size %d", len(body), limit)
	}
	msg, err := toDMS(pub, &header.Properties, body)
	if err != nil {
		return err
	}
	if _, err := message.Validate(msg); err != nil {
		// Refused alone (nacked), so that it does not fail the batch it
		// would be stored with: too large with its properties, bad dms-tags.
		c.srv.logger.Debug("amqp: publish refused", "err", err)
		ch.pub.in <- pubItem{seq: seq, invalid: true}
		return nil
	}
	routed := c.srv.topo.route(c.project, pub.Exchange, pub.RoutingKey, header.Properties.Headers)
	if c.srv.deps.Auth != nil {
		if len(routed) == 0 {
			// Who may not publish learns nothing of the routing.
			if err := c.authorize(authz.ProduceMessages, ""); err != nil {
				return err
			}
		}
		for _, name := range routed {
			if err := c.authorize(authz.ProduceMessages, name); err != nil {
				return err
			}
		}
	}
	var targets []string
	for _, name := range routed {
		q, err := c.srv.deps.Catalog.ResolveQueue(c.ctx, c.project, name)
		if err != nil {
			if catalog.IsNotFound(err) {
				continue
			}
			return rpcError(err, "routing")
		}
		targets = append(targets, q.GetId())
	}
	if len(targets) == 0 && pub.Mandatory {
		// Before the confirm, which the pipeline sends later.
		c.sendContent(ch.id, &wire.BasicReturn{ReplyCode: wire.NoRoute, ReplyText: "NO_ROUTE", Exchange: pub.Exchange, RoutingKey: pub.RoutingKey}, &header.Properties, body)
		c.flush()
	}
	ch.pub.in <- pubItem{seq: seq, queues: targets, msg: msg}
	return nil
}

// toDMS makes a DMS message of an AMQP one.
func toDMS(pub *wire.BasicPublish, props *wire.BasicProperties, body []byte) (*dmsv1.Message, error) {
	m := &dmsv1.Message{Body: body, Attributes: map[string]*dmsv1.AttributeValue{}}
	w := wire.Writer{}
	propsWithout := *props
	if tags, ok := props.Headers[tagsHeader]; ok {
		m.Tags = splitTags(tags)
	}
	w.Buf = appendProperties(w.Buf, &propsWithout)
	m.Attributes[attrProperties] = strAttr(base64.StdEncoding.EncodeToString(w.Buf))
	m.Attributes[attrExchange] = strAttr(pub.Exchange)
	m.Attributes[attrRoutingKey] = strAttr(pub.RoutingKey)
	for k, v := range props.Headers {
		if k == tagsHeader || len(k) == 0 || len(k) > 64 || strings.HasPrefix(k, attrPrefix) {
			continue
		}
		if a := attrOf(v); a != nil {
			m.Attributes[k] = a
		}
	}
	if props.Flags&wire.FlagContentType != 0 {
		m.Attributes["amqp.content-type"] = strAttr(props.ContentType)
	}
	if props.Flags&wire.FlagMessageId != 0 {
		m.Attributes["amqp.message-id"] = strAttr(props.MessageId)
	}
	if props.Flags&wire.FlagCorrelationId != 0 {
		m.Attributes["amqp.correlation-id"] = strAttr(props.CorrelationId)
	}
	if props.Flags&wire.FlagExpiration != 0 {
		ms, err := strconv.ParseInt(props.Expiration, 10, 64)
		if err != nil || ms < 0 {
			return nil, preconditionf("invalid expiration '%s': a non-negative integer of milliseconds", trimName(props.Expiration))
		}
	}
	return m, nil
}

func splitTags(v any) []string {
	var out []string
	switch v := v.(type) {
	case string:
		for _, t := range strings.Split(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				out = append(out, t)
			}
		}
	case []byte:
		return splitTags(string(v))
	case []any:
		for _, e := range v {
			out = append(out, splitTags(e)...)
		}
	}
	return out
}

func strAttr(s string) *dmsv1.AttributeValue {
	return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_StringValue{StringValue: s}}
}

// attrOf maps a header value to an attribute; nested tables, arrays and
// other types are kept only in amqp.properties.
func attrOf(v any) *dmsv1.AttributeValue {
	switch v := v.(type) {
	case string:
		return strAttr(v)
	case []byte:
		return strAttr(string(v))
	case bool:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: v}}
	case float32:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: float64(v)}}
	case float64:
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: v}}
	}
	if n, ok := intArg(v); ok {
		return &dmsv1.AttributeValue{Kind: &dmsv1.AttributeValue_IntValue{IntValue: n}}
	}
	return nil
}

// appendProperties encodes content properties as a content header does.
func appendProperties(buf []byte, p *wire.BasicProperties) []byte {
	b := wire.AppendContent(nil, 0, wire.ClassBasic, p, nil, 0)
	// Frame header (7), class and weight (4), body size (8); end octet (1).
	return append(buf, b[7+12:len(b)-1]...)
}

// fromDMS gives a stored message its AMQP properties, exchange and routing
// key: those it was published with, or, for a message sent through another
// API, its attributes as headers and its tags as dms-tags.
func fromDMS(m *dmsv1.Message, queue string) (props wire.BasicProperties, exchange, key string) {
	attrs := m.GetAttributes()
	exchange, key = attrs[attrExchange].GetStringValue(), queue
	if _, ok := attrs[attrRoutingKey]; ok {
		key = attrs[attrRoutingKey].GetStringValue()
	}
	if enc := attrs[attrProperties].GetStringValue(); enc != "" {
		if raw, err := base64.StdEncoding.DecodeString(enc); err == nil {
			// Class, weight and body size in front, as a content header has them.
			hdr := make([]byte, 12, 12+len(raw))
			if h, err := wire.ParseHeader(append(hdr, raw...)); err == nil {
				props = h.Properties
			}
		}
	} else {
		headers := wire.Table{}
		for k, v := range attrs {
			switch x := v.GetKind().(type) {
			case *dmsv1.AttributeValue_StringValue:
				headers[k] = x.StringValue
			case *dmsv1.AttributeValue_IntValue:
				headers[k] = x.IntValue
			case *dmsv1.AttributeValue_DoubleValue:
				headers[k] = x.DoubleValue
			case *dmsv1.AttributeValue_BoolValue:
				headers[k] = x.BoolValue
			}
		}
		if len(headers) > 0 {
			props.Headers, props.Flags = headers, props.Flags|wire.FlagHeaders
		}
	}
	if len(m.GetTags()) > 0 {
		if props.Headers == nil {
			props.Headers = wire.Table{}
		} else {
			h := make(wire.Table, len(props.Headers)+1)
			for k, v := range props.Headers {
				h[k] = v
			}
			props.Headers = h
		}
		props.Headers[tagsHeader] = strings.Join(m.GetTags(), ",")
		props.Flags |= wire.FlagHeaders
	}
	return props, exchange, key
}

// publisher is a channel's publish pipeline: the read loop queues routed
// messages; one goroutine stores them in batches (one ingest call per
// queue for what arrived meanwhile) and sends the confirms in order.
type publisher struct {
	ch   *channel
	seq  uint64 // the last publish sequence number given (confirm mode)
	in   chan pubItem
	done chan struct{}
	once sync.Once
	// quit ends the wait of a batch for storage to have room (blocked.go).
	quit chan struct{}
}

type pubItem struct {
	seq     uint64 // 0 outside confirm mode
	queues  []string
	msg     *dmsv1.Message
	invalid bool // refused by validation: nacked, not stored
}

// pipelineDepth bounds the publishes queued on a channel: a publisher
// faster than storage then waits in TCP, not in memory.
const pipelineDepth = 4096

func newPublisher(ch *channel) *publisher {
	p := &publisher{ch: ch, in: make(chan pubItem, pipelineDepth), done: make(chan struct{}), quit: make(chan struct{})}
	go p.run()
	return p
}

func (p *publisher) stop() {
	p.once.Do(func() { close(p.in); close(p.quit) })
	<-p.done
}

func (p *publisher) run() {
	defer close(p.done)
	batch := make([]pubItem, 0, maxPublishBatch)
	for item := range p.in {
		batch = append(batch[:0], item)
	more:
		for len(batch) < maxPublishBatch {
			select {
			case it, ok := <-p.in:
				if !ok {
					break more
				}
				batch = append(batch, it)
			default:
				break more
			}
		}
		p.store(batch)
	}
}

// publish stores messages in a queue; a refusal for lack of space is
// retried until storage takes them or the channel closes (blocked.go).
func (p *publisher) publish(ctx context.Context, queue string, msgs []*dmsv1.Message) error {
	s := p.ch.c.srv
	ctx = p.ch.c.publishContext(ctx)
	waiting := false
	for {
		_, err := s.deps.Ingest.Publish(ctx, &ingestv1.PublishRequest{QueueId: queue, Messages: msgs})
		if !storageFull(err) {
			if waiting {
				s.roomAgain()
			}
			return err
		}
		if !waiting {
			select {
			case <-p.quit:
				// The channel is closing: nothing waits for this batch.
				return err
			default:
			}
			waiting = true
			s.waitForRoom()
		}
		select {
		case <-time.After(storageRetry):
		case <-p.quit:
			s.roomAgain()
			return err
		case <-p.ch.c.ctx.Done():
			s.roomAgain()
			return err
		}
	}
}

// publishContext is ctx for the ingest calls of the connection's
// publishes: they name the front end and who published (traces name the
// user, not the system), and count against the project's quotas.
func (c *conn) publishContext(ctx context.Context) context.Context {
	producer := c.principal
	if c.srv.deps.Auth == nil {
		// Authentication off: as the native API records it.
		producer = authz.AnonymousPrincipal
	}
	return ingest.FromFrontEnd(ctx, "amqp", producer)
}

// store writes a batch and confirms it.
func (p *publisher) store(batch []pubItem) {
	c := p.ch.c
	ctx := context.WithoutCancel(c.ctx)
	byQueue := map[string][]int{}
	var order []string
	for i, it := range batch {
		for _, q := range it.queues {
			if byQueue[q] == nil {
				order = append(order, q)
			}
			byQueue[q] = append(byQueue[q], i)
		}
	}
	failed := make([]bool, len(batch))
	for i, it := range batch {
		failed[i] = it.invalid
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, q := range order {
		idx := byQueue[q]
		wg.Add(1)
		go func() {
			defer wg.Done()
			limit := c.srv.lengthLimit(ctx, c.project, q)
			if refused := limit.refuse(ctx, c.srv, len(idx)); refused > 0 {
				// x-overflow reject-publish: the newest are nacked.
				mu.Lock()
				for _, i := range idx[len(idx)-refused:] {
					failed[i] = true
				}
				mu.Unlock()
				idx = idx[:len(idx)-refused]
				if len(idx) == 0 {
					return
				}
			}
			msgs := make([]*dmsv1.Message, len(idx))
			for j, i := range idx {
				msgs[j] = batch[i].msg
			}
			defer limit.dropHead(ctx, c.srv, c.project)
			if err := p.publish(ctx, q, msgs); err != nil {
				c.srv.logger.Warn("amqp: publish failed", "queue", q, "messages", len(msgs), "err", err)
				mu.Lock()
				for _, i := range idx {
					failed[i] = true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	// Confirms: one ack with multiple set when all succeeded, else one per
	// message.
	var last uint64
	allOK := true
	for i, it := range batch {
		if it.seq == 0 {
			continue
		}
		last = it.seq
		if failed[i] {
			allOK = false
		}
	}
	if last == 0 {
		return
	}
	if allOK {
		c.send(p.ch.id, &wire.BasicAck{DeliveryTag: last, Multiple: true})
	} else {
		for i, it := range batch {
			if it.seq == 0 {
				continue
			}
			if failed[i] {
				c.send(p.ch.id, &wire.BasicNack{DeliveryTag: it.seq})
			} else {
				c.send(p.ch.id, &wire.BasicAck{DeliveryTag: it.seq})
			}
		}
	}
	c.flush()
}
