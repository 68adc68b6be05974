package testserver

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// Queues returns a QueueService client.
func (s *Server) Queues() dmsv1.QueueServiceClient { return dmsv1.NewQueueServiceClient(s.Conn) }

// Producer returns a ProducerService client.
func (s *Server) Producer() dmsv1.ProducerServiceClient {
	return dmsv1.NewProducerServiceClient(s.Conn)
}

// Consumer returns a ConsumerService client.
func (s *Server) Consumer() dmsv1.ConsumerServiceClient {
	return dmsv1.NewConsumerServiceClient(s.Conn)
}

// CreateQueue creates a queue in project or fails the test.
func (s *Server) CreateQueue(t testing.TB, project string, q *dmsv1.Queue) *dmsv1.Queue {
	t.Helper()
	resp, err := s.Queues().CreateQueue(context.Background(), &dmsv1.CreateQueueRequest{Parent: "projects/" + project, Queue: q})
	if err != nil {
		t.Fatalf("create queue %q: %v", q.GetDisplayName(), err)
	}
	return resp.GetQueue()
}

// CreateGroup creates a consumer group on a queue or fails the test.
func (s *Server) CreateGroup(t testing.TB, queue *dmsv1.Queue, name string) *dmsv1.ConsumerGroup {
	t.Helper()
	resp, err := s.Queues().CreateConsumerGroup(context.Background(), &dmsv1.CreateConsumerGroupRequest{Parent: queue.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: name}})
	if err != nil {
		t.Fatalf("create group %q: %v", name, err)
	}
	return resp.GetGroup()
}

// Send sends one message per body or fails the test.
func (s *Server) Send(t testing.TB, queue *dmsv1.Queue, bodies ...string) []*dmsv1.SendResult {
	t.Helper()
	msgs := make([]*dmsv1.Message, len(bodies))
	for i, b := range bodies {
		msgs[i] = &dmsv1.Message{Body: []byte(b)}
	}
	resp, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: queue.GetName(), Messages: msgs})
	if err != nil {
		t.Fatalf("send: %v", err)
	}
	return resp.GetResults()
}

// Receive receives up to max messages without waiting, with the given
// visibility timeout, or fails the test.
func (s *Server) Receive(t testing.TB, group *dmsv1.ConsumerGroup, max int, visibility time.Duration) []*dmsv1.ReceivedMessage {
	t.Helper()
	resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{
		Group: group.GetName(), MaxMessages: int32(max), VisibilityTimeout: durationpb.New(visibility),
	})
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return resp.GetMessages()
}

// Ack settles deliveries with one status and returns the results.
func (s *Server) Ack(t testing.TB, group *dmsv1.ConsumerGroup, status dmsv1.AckStatus, msgs ...*dmsv1.ReceivedMessage) []*dmsv1.AckResult {
	t.Helper()
	acks := make([]*dmsv1.Ack, len(msgs))
	for i, m := range msgs {
		acks[i] = &dmsv1.Ack{ReceiptHandle: m.GetReceiptHandle(), Status: status}
	}
	resp, err := s.Consumer().AckMessages(context.Background(), &dmsv1.AckMessagesRequest{Group: group.GetName(), Acks: acks})
	if err != nil {
		t.Fatalf("ack: %v", err)
	}
	return resp.GetResults()
}

// Bodies returns the bodies of received messages as strings.
func Bodies(msgs []*dmsv1.ReceivedMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.GetMessage().GetBody())
	}
	return out
}
