package dms

import (
	"context"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Send stores messages in a queue with one SendMessages call and returns one
// result per message, in order. The batch is all or nothing: if any message
// is invalid, nothing is stored and the *Error names the offending message.
// A call carries at most MaxBatchMessages messages and MaxBatchBytes bytes;
// a Producer splits and coalesces for you. When Send returns, the messages
// are durable according to the queue's mode.
//
// Send does not retry. If it fails with DeadlineExceeded or Unavailable the
// messages may or may not have been stored; to retry without storing them
// twice, use SendIdempotent.
func (p *Project) Send(ctx context.Context, queue string, msgs ...Message) ([]SendResult, error) {
	return p.SendIdempotent(ctx, queue, "", msgs...)
}

// SendIdempotent is Send with an idempotence key (at most 128 bytes, unique
// per batch): sending the same batch again with the same key, after a
// timeout or a lost answer, stores nothing twice and returns the first
// attempt's results, as long as the first attempt is among the last 100000
// messages of its partition. An empty key is Send.
func (p *Project) SendIdempotent(ctx context.Context, queue, key string, msgs ...Message) ([]SendResult, error) {
	req := &dmsv1.SendMessagesRequest{Queue: p.queueResource(queue), Messages: make([]*dmsv1.Message, len(msgs)), IdempotenceKey: key}
	for i := range msgs {
		pm, err := msgs[i].toProto()
		if err != nil {
			return nil, err
		}
		req.Messages[i] = pm
	}
	resp, err := p.client.prod.SendMessages(ctx, req)
	if err != nil {
		return nil, fromRPC(ctx, err)
	}
	return sendResults(resp), nil
}

func sendResults(resp *dmsv1.SendMessagesResponse) []SendResult {
	out := make([]SendResult, len(resp.GetResults()))
	for i, r := range resp.GetResults() {
		out[i] = SendResult{MessageID: r.GetMessageId(), Partition: int(r.GetPartition()), Offset: r.GetOffset(), ScheduleID: r.GetScheduleId()}
		if r.GetDeliverTime() != nil {
			out[i].DeliverTime = r.GetDeliverTime().AsTime()
		}
	}
	return out
}
