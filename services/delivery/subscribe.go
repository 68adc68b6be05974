package delivery

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/errs"
)

// subscribeWait is how long one streaming receive waits before it looks at
// the stream's credits again.
const subscribeWait = 5 * time.Second

// Subscribe implements dms.v1.ConsumerService: a receive loop that sends
// while the client has credits, and a reader that applies credits and acks.
func (h *Handler) Subscribe(stream dmsv1.ConsumerService_SubscribeServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return errs.Wrapf(errs.ErrRequestInvalid, "the first message of a subscription must carry start")
	}
	opts, err := receiveOptions(0, nil, start.GetVisibilityTimeout())
	if err != nil {
		return err
	}
	opts.Filter = start.GetTagFilter()
	q, g, err := h.cache.ResolveGroupName(ctx, start.GetGroup())
	if err != nil {
		return err
	}
	c, err := h.engine.consumption(ctx, kindMessages, q, g, "", startEarliest)
	if err != nil {
		return err
	}
	sub := &subscription{credits: int64(start.GetCredits()) + int64(first.GetCredits()), granted: make(chan struct{}, 1), delivered: map[position]int32{}}
	// When the client closes its side, the reader ends and cancels the
	// receive loop, and the stream ends cleanly.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	readerDone := make(chan error, 1)
	go func() {
		readerDone <- h.readSubscription(stream, sub, q, g)
		cancel()
	}()
	for {
		select {
		case err := <-readerDone:
			return err
		default:
		}
		n := sub.available()
		if n <= 0 {
			select {
			case <-sub.granted:
				continue
			case err := <-readerDone:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		opts.MaxMessages, opts.WaitTime = int(min(n, MaxReceiveMessages)), subscribeWait
		msgs, err := h.engine.receive(ctx, c, opts)
		if err != nil {
			if ctx.Err() != nil && stream.Context().Err() == nil {
				return <-readerDone
			}
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		sub.sent(msgs)
		if err := sub.send(stream, &dmsv1.SubscribeResponse{Messages: msgs}); err != nil {
			return err
		}
	}
}

type position struct {
	partition int32
	offset    int64
}

// subscription is the flow-control and range-ack state of one stream.
type subscription struct {
	mu        sync.Mutex
	credits   int64
	granted   chan struct{}
	delivered map[position]int32 // delivery counts of what this stream sent and has not settled
	sendMu    sync.Mutex
}

func (s *subscription) available() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.credits
}

func (s *subscription) grant(n int32) {
	s.mu.Lock()
	s.credits += int64(n)
	s.mu.Unlock()
	select {
	case s.granted <- struct{}{}:
	default:
	}
}

func (s *subscription) sent(msgs []*dmsv1.ReceivedMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.credits -= int64(len(msgs))
	for _, m := range msgs {
		s.delivered[position{m.GetPartition(), m.GetOffset()}] = m.GetDeliveryCount()
	}
}

func (s *subscription) send(stream dmsv1.ConsumerService_SubscribeServer, resp *dmsv1.SubscribeResponse) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return stream.Send(resp)
}

// readSubscription applies the client's credits and acks until the client
// closes its side. Range acks settle, with their exact delivery counts, the
// offsets this stream was sent; a range is applied when all of it was.
func (h *Handler) readSubscription(stream dmsv1.ConsumerService_SubscribeServer, sub *subscription, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) error {
	ctx := stream.Context()
	var owner receipt // range acks are receipts of this queue and group
	owner.setOwner(q.GetId(), g.GetId())
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if req.GetCredits() > 0 {
			sub.grant(req.GetCredits())
		}
		if len(req.GetAcks()) == 0 && len(req.GetAckRanges()) == 0 {
			continue
		}
		items := h.engine.decode(ackRequestsOf(req.GetAcks()))
		rangeEnds := make([]int, len(req.GetAckRanges()))
		sub.mu.Lock()
		for i, r := range req.GetAckRanges() {
			for o := r.GetFirst(); o <= r.GetLast() && o-r.GetFirst() < MaxReceiveMessages*10; o++ {
				it := ackItem{receipt: receipt{kind: kindMessages, queue: owner.queue, group: owner.group, partition: r.GetPartition(), offset: o}}
				count, ok := sub.delivered[position{r.GetPartition(), o}]
				if ok {
					it.receipt.count = count
				} else {
					it.err = errs.Wrapf(errs.ErrReceiptHandleExpired, "offset %d of partition %d was not sent on this subscription or is settled", o, r.GetPartition())
				}
				items = append(items, it)
			}
			rangeEnds[i] = len(items)
		}
		sub.mu.Unlock()
		results, err := h.engine.ack(ctx, q, g, kindMessages, items, false)
		if err != nil {
			return err
		}
		// Forget what was settled, but only that delivery: a failed message
		// may already have been pushed again, with a higher count, while
		// the ack ran.
		sub.mu.Lock()
		for i, it := range items {
			pos := position{it.receipt.partition, it.receipt.offset}
			if count, ok := sub.delivered[pos]; ok && count == it.receipt.count && results[i].GetApplied() {
				delete(sub.delivered, pos)
			}
		}
		sub.mu.Unlock()
		out := results[:len(req.GetAcks())]
		from := len(req.GetAcks())
		for _, end := range rangeEnds {
			rangeResult := &dmsv1.AckResult{Applied: true}
			for _, r := range results[from:end] {
				if !r.GetApplied() {
					rangeResult = r
					break
				}
			}
			out = append(out, rangeResult)
			from = end
		}
		if err := sub.send(stream, &dmsv1.SubscribeResponse{AckResults: out}); err != nil {
			return err
		}
	}
}

func ackRequestsOf(acks []*dmsv1.Ack) []AckRequest {
	out := make([]AckRequest, len(acks))
	for i, a := range acks {
		out[i] = AckRequest{Handle: a.GetReceiptHandle(), Status: a.GetStatus()}
	}
	return out
}
