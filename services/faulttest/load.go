package faulttest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Record is what the load saw: every acknowledged send, every delivery and
// every applied ack, for the checker.
type Record struct {
	mu         sync.Mutex
	sends      []send               // acknowledged sends, one per message
	unanswered int                  // messages whose sends were never acknowledged (may be stored or not)
	deliveries []delivery           // in the order they were received
	receives   int                  // receive calls that brought messages, numbering delivery.receive
	acked      map[string]time.Time // message id → when its ack was answered as applied
	// ackBegan is, per message id, when the first ack that may have been
	// applied (answered as applied, or not answered at all) was sent: from
	// then on the service may rightly treat the message as settled.
	ackBegan    map[string]time.Time
	ackRefused  map[string]refusal // message id → an ack of it answered as not applied
	errors      map[string]int     // send and receive errors by gRPC code, for the report
	errorSample map[string]string  // the first message of each kind of error
}

// send is one acknowledged message.
type send struct {
	queue, body    string
	partition      int32
	started, acked time.Time // first attempt; the answer
}

// delivery is one message a consumer received.
type delivery struct {
	queue, body, id string
	partition       int32
	offset          int64
	deliveryCount   int32
	via             string    // the node the receive went to
	receiveStarted  time.Time // when the receive call that brought it began
	receiveAnswered time.Time // when its answer arrived
	receive         int       // the receive call that brought it (its messages are consecutive in Record.deliveries)
}

func newRecord() *Record {
	return &Record{acked: map[string]time.Time{}, ackBegan: map[string]time.Time{}, ackRefused: map[string]refusal{}, errors: map[string]int{}, errorSample: map[string]string{}}
}

func (r *Record) countError(what string, err error) {
	r.mu.Lock()
	key := what + " " + status.Code(err).String()
	r.errors[key]++
	if _, seen := r.errorSample[key]; !seen {
		r.errorSample[key] = status.Convert(err).Message()
	}
	r.mu.Unlock()
}

// Load is the steady producers and consumers of the test's queues, through
// any node: a call that fails goes to the next node.
type Load struct {
	c   *Cluster
	rec *Record
	wg  sync.WaitGroup
}

// producer sends a sequence of batches, each retried with its idempotence
// key until it is acknowledged or the context ends.
type producer struct {
	queue     *dmsv1.Queue
	name, key string // key: the ordering key of every message, if any
	batch     int
	pause     time.Duration // between acknowledged batches
}

// SendUntilAcked sends one batch, retrying through nodes from via on, until
// it is acknowledged or ctx ends; it records the acknowledged messages and
// returns the answer's time (zero when not acknowledged).
func (l *Load) SendUntilAcked(ctx context.Context, q *dmsv1.Queue, nodes []*Node, via int, idempotenceKey string, msgs []*dmsv1.Message, attemptTimeout time.Duration) (int, time.Time, []*dmsv1.SendResult) {
	started := time.Now()
	for ctx.Err() == nil {
		n := nodes[via%len(nodes)]
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		resp, err := dmsv1.NewProducerServiceClient(n.Conn).SendMessages(actx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs, IdempotenceKey: idempotenceKey})
		cancel()
		if err == nil {
			at := time.Now()
			l.rec.mu.Lock()
			for i, m := range msgs {
				l.rec.sends = append(l.rec.sends, send{queue: q.GetName(), body: string(m.GetBody()),
					partition: resp.GetResults()[i].GetPartition(), started: started, acked: at})
			}
			l.rec.mu.Unlock()
			return via, at, resp.GetResults()
		}
		if ctx.Err() == nil {
			l.rec.countError("send", err)
		}
		via++
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	l.rec.mu.Lock()
	l.rec.unanswered += len(msgs)
	l.rec.mu.Unlock()
	return via, time.Time{}, nil
}

func (l *Load) produce(ctx context.Context, p producer, via int) {
	for seq := 1; ctx.Err() == nil; seq += p.batch {
		msgs := make([]*dmsv1.Message, p.batch)
		for i := range msgs {
			msgs[i] = &dmsv1.Message{Body: fmt.Appendf(nil, "%s-%d", p.name, seq+i), OrderingKey: p.key}
		}
		var at time.Time
		via, at, _ = l.SendUntilAcked(ctx, p.queue, l.c.Nodes, via, fmt.Sprintf("%s-%d", p.name, seq), msgs, 5*time.Second)
		if at.IsZero() {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(p.pause):
		}
	}
}

// consume receives and acknowledges everything of a group; it records each
// delivery before it acknowledges it, so that the record's order is the
// order a FIFO queue may deliver in.
func (l *Load) consume(ctx context.Context, q *dmsv1.Queue, group *dmsv1.ConsumerGroup, via int) {
	for ctx.Err() == nil {
		n := l.c.Nodes[via%len(l.c.Nodes)]
		client := dmsv1.NewConsumerServiceClient(n.Conn)
		started := time.Now()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := client.ReceiveMessages(rctx, &dmsv1.ReceiveMessagesRequest{
			Group: group.GetName(), MaxMessages: 50, WaitTime: durationpb.New(time.Second), VisibilityTimeout: durationpb.New(15 * time.Second)})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				l.rec.countError("receive", err)
				via++
				time.Sleep(20 * time.Millisecond)
			}
			continue
		}
		if len(resp.GetMessages()) == 0 {
			continue
		}
		answered := time.Now()
		acks := make([]*dmsv1.Ack, len(resp.GetMessages()))
		l.rec.mu.Lock()
		l.rec.receives++
		for i, m := range resp.GetMessages() {
			l.rec.deliveries = append(l.rec.deliveries, delivery{queue: q.GetName(), body: string(m.GetMessage().GetBody()), id: m.GetMessageId(), partition: m.GetPartition(),
				offset: m.GetOffset(), deliveryCount: m.GetDeliveryCount(), via: n.Name, receiveStarted: started, receiveAnswered: answered, receive: l.rec.receives})
			acks[i] = &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle(), Status: dmsv1.AckStatus_ACK_STATUS_SUCCESS}
		}
		l.rec.mu.Unlock()
		ackSent := time.Now()
		actx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ackResp, err := client.AckMessages(actx, &dmsv1.AckMessagesRequest{Group: group.GetName(), Acks: acks})
		cancel()
		if err != nil {
			// Unanswered: the acks may be applied or not; those messages
			// may come back after their visibility timeout.
			l.rec.countError("ack", err)
			l.rec.mu.Lock()
			for _, m := range resp.GetMessages() {
				l.rec.ackMayApply(m.GetMessageId(), ackSent)
			}
			l.rec.mu.Unlock()
			via++
			continue
		}
		at := time.Now()
		l.rec.mu.Lock()
		for i, r := range ackResp.GetResults() {
			if r.GetApplied() {
				id := resp.GetMessages()[i].GetMessageId()
				l.rec.acked[id] = at
				l.rec.ackMayApply(id, ackSent)
			} else {
				l.rec.ackRefused[resp.GetMessages()[i].GetMessageId()] = refusal{at: at, reason: r.GetErrorReason() + ": " + r.GetErrorMessage()}
			}
		}
		l.rec.mu.Unlock()
	}
}

// refusal is an ack answered as not applied.
type refusal struct {
	at     time.Time
	reason string
}

// ackMayApply notes an ack of id sent at t that may have been applied.
// The caller holds r.mu.
func (r *Record) ackMayApply(id string, t time.Time) {
	if was, ok := r.ackBegan[id]; !ok || t.Before(was) {
		r.ackBegan[id] = t
	}
}

// splitSeq splits a body "name-seq" into its sequence's name and number.
func splitSeq(body string) (string, int) {
	for i := len(body) - 1; i >= 0; i-- {
		if body[i] == '-' {
			var seq int
			_, _ = fmt.Sscan(body[i+1:], &seq)
			return body[:i], seq
		}
	}
	return body, 0
}
