package amqp_test

import (
	"context"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// The same queue through both APIs: what AMQP publishes a DMS consumer
// group receives over gRPC, with its headers as attributes and dms-tags as
// tags; what gRPC sends an AMQP consumer gets, attributes as headers.
func TestCrossProtocol(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("cross", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 1))
	require.NoError(t, ch.PublishWithContext(ctx, "", "cross", false, false, amqp091.Publishing{
		ContentType: "application/json", CorrelationId: "c-1", DeliveryMode: amqp091.Persistent,
		Headers: amqp091.Table{"region": "eu", "dms-tags": "new,vip", "count": int64(3)},
		Body:    []byte(`{"order":42}`),
	}))
	require.True(t, (<-confirms).Ack)

	// A DMS consumer group of its own gets every message; the group "amqp"
	// would share them with the AMQP consumers.
	group := "projects/" + server.DefaultProject + "/queues/cross/groups/billing"
	_, err = srv.Queues().CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: "projects/" + server.DefaultProject + "/queues/cross", Group: &dmsv1.ConsumerGroup{DisplayName: "billing"}})
	require.NoError(t, err)
	resp, err := srv.Consumer().ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: group, MaxMessages: 10, WaitTime: durationpb.New(5 * time.Second)})
	require.NoError(t, err)
	require.Len(t, resp.GetMessages(), 1)
	m := resp.GetMessages()[0].GetMessage()
	require.Equal(t, `{"order":42}`, string(m.GetBody()))
	require.ElementsMatch(t, []string{"new", "vip"}, m.GetTags())
	require.Equal(t, "eu", m.GetAttributes()["region"].GetStringValue())
	require.EqualValues(t, 3, m.GetAttributes()["count"].GetIntValue())
	require.Equal(t, "application/json", m.GetAttributes()["amqp.content-type"].GetStringValue())
	require.Equal(t, "c-1", m.GetAttributes()["amqp.correlation-id"].GetStringValue())

	// The AMQP consumer still gets it, properties as published.
	d, ok, err := ch.Get("cross", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "application/json", d.ContentType)
	require.Equal(t, "c-1", d.CorrelationId)
	require.EqualValues(t, amqp091.Persistent, d.DeliveryMode)
	require.Equal(t, "new,vip", d.Headers["dms-tags"])
	require.NoError(t, d.Ack(false))

	// gRPC → AMQP.
	_, err = srv.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: "projects/" + server.DefaultProject + "/queues/cross", Messages: []*dmsv1.Message{{
		Body: []byte("from grpc"), Tags: []string{"t1"},
		Attributes: map[string]*dmsv1.AttributeValue{"k": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "v"}}, "n": {Kind: &dmsv1.AttributeValue_IntValue{IntValue: 7}}},
	}}})
	require.NoError(t, err)
	deliveries, err := ch.Consume("cross", "", false, false, false, false, nil)
	require.NoError(t, err)
	select {
	case d := <-deliveries:
		require.Equal(t, "from grpc", string(d.Body))
		require.Equal(t, "cross", d.RoutingKey)
		require.Equal(t, "v", d.Headers["k"])
		require.EqualValues(t, 7, d.Headers["n"])
		require.Equal(t, "t1", d.Headers["dms-tags"])
		require.NoError(t, d.Ack(false))
	case <-time.After(30 * time.Second):
		t.Fatal("the message sent over gRPC did not reach the AMQP consumer")
	}
}

// A queue made through another API has no AMQP record and no bindings:
// unbinding and deleting it over AMQP must still answer (a delete of
// nothing makes no etcd revision for the topology cache to wait for).
func TestDeleteQueueMadeElsewhere(t *testing.T) {
	srv := testserver.Start(t)
	ctx := context.Background()
	_, err := srv.Queues().CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "elsewhere"}})
	require.NoError(t, err)
	ch := channel(t, dial(t, srv))
	require.NoError(t, ch.QueueUnbind("elsewhere", "k", "amq.direct", nil))
	_, err = ch.QueueDelete("elsewhere", false, false, false)
	require.NoError(t, err)
	_, err = srv.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: "projects/" + server.DefaultProject + "/queues/elsewhere"})
	require.Error(t, err)
	require.NoError(t, ch.ExchangeDeclare("e", "direct", false, false, false, false, nil))
	require.NoError(t, ch.ExchangeDelete("e", false, false))
}
