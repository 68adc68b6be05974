package amqp_test

import (
	"context"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/ingest"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// AMQP publishes count against the project's quotas as native sends do
// (issue 15): a body over the project's largest message closes the
// channel with 406 PRECONDITION_FAILED, as RabbitMQ answers a message
// over its max_message_size; with publisher confirms, one over the send
// rate is nacked. Neither stores anything. What is stored
// names the user who published it and the AMQP front end in its trace.
func TestPublishQuotasAndProducer(t *testing.T) {
	clock := testserver.NewClock(time.Now()) // the buckets refill only when the test says
	w := startAuth(t, testserver.WithClock(clock))
	ctx := w.admin
	queues := dmsv1.NewQueueServiceClient(w.s.Conn)
	qr, err := queues.CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "quota-q"}})
	require.NoError(t, err)
	q := qr.GetQueue()
	gr, err := queues.CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g"}})
	require.NoError(t, err)
	g := gr.GetGroup()
	_, err = queues.UpdateProjectQuotas(ctx, &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + server.DefaultProject,
		Quotas: &dmsv1.ProjectQuotas{MaxQueues: 30, MaxGroupsPerQueue: 3, MaxMessageBytes: 1000, SendMessagesPerSecond: 2}})
	require.NoError(t, err)

	conn := w.mustDial(t, "pete", "/")
	ch, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish := func(body string) bool {
		t.Helper()
		dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "quota-q", false, false, amqp091.Publishing{Body: []byte(body)})
		require.NoError(t, err)
		ok, err := dc.WaitContext(context.Background())
		require.NoError(t, err)
		return ok
	}

	// The size quota, on a channel of its own.
	big, err := conn.Channel()
	require.NoError(t, err)
	closed := big.NotifyClose(make(chan *amqp091.Error, 1))
	require.NoError(t, big.PublishWithContext(context.Background(), "", "quota-q", false, false, amqp091.Publishing{Body: []byte(strings.Repeat("x", 1001))}))
	e := <-closed
	require.NotNil(t, e, "the channel closed")
	require.Equal(t, amqp091.PreconditionFailed, e.Code)
	require.Equal(t, "PRECONDITION_FAILED - message size 1001 is larger than configured max size 1000", e.Reason)
	// The rate: 2 messages/s, a bucket of one second's worth; the clock
	// stands still, so the third is over the rate.
	require.True(t, publish("one"))
	require.True(t, publish("two"))
	require.False(t, publish("three"), "over the project's send rate")
	clock.Advance(time.Second)
	require.True(t, publish("four"), "the bucket filled again")

	consumer := dmsv1.NewConsumerServiceClient(w.s.Conn)
	resp, err := consumer.ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 10, ConsumerId: "c", WaitTime: durationpb.New(5 * time.Second), VisibilityTimeout: durationpb.New(30 * time.Second)})
	require.NoError(t, err)
	var bodies []string
	for _, m := range resp.GetMessages() {
		bodies = append(bodies, string(m.GetMessage().GetBody()))
	}
	require.ElementsMatch(t, []string{"one", "two", "four"}, bodies, "refused publishes store nothing")

	traces := dmsv1.NewMessageTraceServiceClient(w.s.Conn)
	tr, err := traces.GetMessageTrace(ctx, &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: resp.GetMessages()[0].GetMessageId()})
	require.NoError(t, err)
	require.Len(t, tr.GetTraces(), 1)
	require.Equal(t, "user:"+w.users["pete"], tr.GetTraces()[0].GetProducer(), "the user who published, not the system")
	require.Equal(t, "amqp", tr.GetTraces()[0].GetFrontEnd())

	// An AMQP listener on a node without the ingest role publishes over
	// the internal listener: the producer travels in the call's metadata,
	// and the call stays the cluster's own (not decided for the user).
	pete := authz.Principal{Kind: authz.User, UserID: w.users["pete"]}
	clock.Advance(time.Second)
	_, err = ingestv1.NewIngestServiceClient(w.s.Internal).Publish(ingest.FromFrontEnd(context.Background(), "amqp", pete),
		&ingestv1.PublishRequest{QueueId: q.GetId(), Messages: []*dmsv1.Message{{Body: []byte("remote")}}})
	require.NoError(t, err)
	resp, err = consumer.ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 10, ConsumerId: "c", WaitTime: durationpb.New(5 * time.Second), VisibilityTimeout: durationpb.New(30 * time.Second)})
	require.NoError(t, err)
	require.Len(t, resp.GetMessages(), 1)
	require.Equal(t, "remote", string(resp.GetMessages()[0].GetMessage().GetBody()))
	tr, err = traces.GetMessageTrace(ctx, &dmsv1.GetMessageTraceRequest{Queue: q.GetName(), MessageId: resp.GetMessages()[0].GetMessageId()})
	require.NoError(t, err)
	require.Equal(t, "user:"+w.users["pete"], tr.GetTraces()[0].GetProducer())
	require.Equal(t, "amqp", tr.GetTraces()[0].GetFrontEnd())
}

// Dead-lettering moves a message that was admitted when it was published:
// the project's send rate does not apply again, so a rejected message
// reaches its dead-letter queue even while the project is over its rate
// (else it would come back to the queue, again and again).
func TestDeadLetterIsNotRateLimited(t *testing.T) {
	clock := testserver.NewClock(time.Now()) // the buckets refill only when the test says
	srv := testserver.Start(t, testserver.WithClock(clock))
	ch := channel(t, dial(t, srv))
	_, err := ch.QueueDeclare("dead", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("work", true, false, false, false, amqp091.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
	require.NoError(t, err)
	_, err = srv.Queues().UpdateProjectQuotas(context.Background(), &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + server.DefaultProject,
		Quotas: &dmsv1.ProjectQuotas{MaxQueues: 30, MaxGroupsPerQueue: 3, MaxMessageBytes: 1000, SendMessagesPerSecond: 1}})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish(t, ch, "", "work", "bad") // takes the second's only token
	dc, err := ch.PublishWithDeferredConfirmWithContext(context.Background(), "", "work", false, false, amqp091.Publishing{Body: []byte("over")})
	require.NoError(t, err)
	ok, err := dc.WaitContext(context.Background())
	require.NoError(t, err)
	require.False(t, ok, "the project is over its rate")

	d, ok, err := ch.Get("work", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, d.Reject(false))
	dead, ok, err := ch.Get("dead", true)
	require.NoError(t, err)
	require.True(t, ok, "the rejected message went to its dead-letter queue")
	require.Equal(t, "bad", string(dead.Body))
	require.Empty(t, getAll(t, ch, "work"))
}
