package amqp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/testserver"
)

func dial(t *testing.T, srv *testserver.Server) *amqp091.Connection {
	t.Helper()
	conn, err := amqp091.Dial("amqp://guest:guest@" + srv.AMQPAddr + "/")
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func channel(t *testing.T, conn *amqp091.Connection) *amqp091.Channel {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	return ch
}

func TestPublishConfirmConsumeAck(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	q, err := ch.QueueDeclare("orders", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, "orders", q.Name)

	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 100))
	const n = 20
	ctx := context.Background()
	for i := range n {
		require.NoError(t, ch.PublishWithContext(ctx, "", "orders", false, false, amqp091.Publishing{
			ContentType: "text/plain", MessageId: fmt.Sprint(i), Body: []byte(fmt.Sprintf("m%d", i)),
			Headers: amqp091.Table{"region": "eu", "n": int32(i)},
		}))
	}
	for i := range n {
		c := <-confirms
		require.True(t, c.Ack, "confirm %d", i)
		require.Equal(t, uint64(i+1), c.DeliveryTag)
	}

	require.NoError(t, ch.Qos(5, 0, false))
	deliveries, err := ch.Consume("orders", "", false, false, false, false, nil)
	require.NoError(t, err)
	for i := range n {
		d := <-deliveries
		require.Equal(t, fmt.Sprintf("m%d", i), string(d.Body))
		require.Equal(t, "text/plain", d.ContentType)
		require.Equal(t, fmt.Sprint(i), d.MessageId)
		require.Equal(t, "eu", d.Headers["region"])
		require.EqualValues(t, i, d.Headers["n"])
		require.False(t, d.Redelivered)
		require.Equal(t, "orders", d.RoutingKey)
		require.NoError(t, d.Ack(false))
	}
	q, err = ch.QueueDeclarePassive("orders", true, false, false, false, nil)
	require.NoError(t, err)
	require.Equal(t, 0, q.Messages)
}

func TestUnackedReturnOnChannelClose(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("work", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 10))
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "work", false, false, amqp091.Publishing{Body: []byte("x")}))
	require.True(t, (<-confirms).Ack)

	c1 := channel(t, conn)
	d1, err := c1.Consume("work", "", false, false, false, false, nil)
	require.NoError(t, err)
	first := <-d1
	require.False(t, first.Redelivered)
	require.NoError(t, c1.Close()) // unacked: back to the queue at once

	c2 := channel(t, conn)
	d2, err := c2.Consume("work", "", false, false, false, false, nil)
	require.NoError(t, err)
	select {
	case again := <-d2:
		require.Equal(t, "x", string(again.Body))
		require.True(t, again.Redelivered)
		require.NoError(t, again.Nack(false, true))
		third := <-d2
		require.True(t, third.Redelivered)
		require.NoError(t, third.Ack(false))
	case <-time.After(30 * time.Second):
		t.Fatal("the unacked message did not come back after its channel closed")
	}
}

func TestExchangesRouteByBindings(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	require.NoError(t, ch.ExchangeDeclare("logs", "topic", true, false, false, false, nil))
	for _, q := range []string{"all", "errors"} {
		_, err := ch.QueueDeclare(q, true, false, false, false, nil)
		require.NoError(t, err)
	}
	require.NoError(t, ch.QueueBind("all", "#", "logs", false, nil))
	require.NoError(t, ch.QueueBind("errors", "*.error", "logs", false, nil))
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 10))
	returns := ch.NotifyReturn(make(chan amqp091.Return, 10))
	ctx := context.Background()
	require.NoError(t, ch.PublishWithContext(ctx, "logs", "db.error", true, false, amqp091.Publishing{Body: []byte("e")}))
	require.NoError(t, ch.PublishWithContext(ctx, "logs", "db.info", true, false, amqp091.Publishing{Body: []byte("i")}))
	require.NoError(t, ch.PublishWithContext(ctx, "", "nowhere", true, false, amqp091.Publishing{Body: []byte("lost")}))
	for range 3 {
		require.True(t, (<-confirms).Ack)
	}
	r := <-returns
	require.Equal(t, "nowhere", r.RoutingKey)
	require.EqualValues(t, 312, r.ReplyCode)

	get := func(q string) []string {
		var out []string
		for {
			d, ok, err := ch.Get(q, true)
			require.NoError(t, err)
			if !ok {
				return out
			}
			out = append(out, string(d.Body))
		}
	}
	require.Equal(t, []string{"e", "i"}, get("all"))
	require.Equal(t, []string{"e"}, get("errors"))

	// Unknown exchange: channel closed with 404.
	err := ch.PublishWithContext(ctx, "missing", "k", false, false, amqp091.Publishing{Body: []byte("x")})
	require.NoError(t, err)
	closed := <-ch.NotifyClose(make(chan *amqp091.Error, 1))
	if closed != nil {
		require.Equal(t, 404, closed.Code)
	}
}
