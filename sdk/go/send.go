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
// messages may or may not have been stored, and sending them again can store
// them twice: the server has no idempotent-producer key yet.
func (p *Project) Send(ctx context.Context, queue string, msgs ...Message) ([]SendResult, error) {
	req := &dmsv1.SendMessagesRequest{Queue: p.queueResource(queue), Messages: make([]*dmsv1.Message, len(msgs))}
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
		out[i] = SendResult{MessageID: r.GetMessageId(), Partition: int(r.GetPartition()), Offset: r.GetOffset()}
	}
	return out
}
