package amqp_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// publish sends bodies with confirms and waits for them.
func publish(t *testing.T, ch *amqp091.Channel, exchange, key string, bodies ...string) {
	t.Helper()
	ctx := context.Background()
	for _, b := range bodies {
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, key, false, false, amqp091.Publishing{Body: []byte(b)})
		require.NoError(t, err)
		ok, err := conf.WaitContext(ctx)
		require.NoError(t, err)
		require.True(t, ok)
	}
}

func receive(t *testing.T, deliveries <-chan amqp091.Delivery) amqp091.Delivery {
	t.Helper()
	select {
	case d, ok := <-deliveries:
		require.True(t, ok, "the consumer was closed")
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery")
	}
	return amqp091.Delivery{}
}

func getAll(t *testing.T, ch *amqp091.Channel, q string) []string {
	t.Helper()
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

func TestSemantics(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)

	t.Run("prefetch bounds what a consumer holds", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("prefetch", true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		publish(t, ch, "", "prefetch", "1", "2", "3", "4", "5")
		holder := channel(t, conn)
		require.NoError(t, holder.Qos(2, 0, false))
		deliveries, err := holder.Consume("prefetch", "", false, false, false, false, nil)
		require.NoError(t, err)
		first, second := receive(t, deliveries), receive(t, deliveries)
		require.Equal(t, []string{"1", "2"}, []string{string(first.Body), string(second.Body)})
		// The holder has no credit left: the other three are another's.
		require.Equal(t, []string{"3", "4", "5"}, getAll(t, ch, "prefetch"))
		require.NoError(t, second.Ack(true)) // multiple: both
		require.NoError(t, holder.Close())
		require.Empty(t, getAll(t, ch, "prefetch"), "acked with multiple=true: none comes back")
	})

	t.Run("x-delivery-limit dead-letters", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("limited", true, false, false, false, amqp091.Table{"x-delivery-limit": int32(1), "x-queue-type": "quorum"})
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		publish(t, ch, "", "limited", "poison")
		deliveries, err := ch.Consume("limited", "", false, false, false, false, nil)
		require.NoError(t, err)
		d := receive(t, deliveries)
		require.False(t, d.Redelivered)
		require.NoError(t, d.Nack(false, true))
		d = receive(t, deliveries)
		require.True(t, d.Redelivered)
		require.NoError(t, d.Reject(true)) // the second failure: the limit
		// Now a dead letter of the group "amqp", readable over gRPC.
		group := "projects/" + server.DefaultProject + "/queues/limited/groups/amqp"
		resp, err := srv.Consumer().ReceiveDeadLetters(context.Background(), &dmsv1.ReceiveDeadLettersRequest{Group: group, MaxMessages: 10, WaitTime: durationpb.New(10 * time.Second)})
		require.NoError(t, err)
		require.Len(t, resp.GetMessages(), 1)
		require.Equal(t, "poison", string(resp.GetMessages()[0].GetMessage().GetBody()))
	})

	t.Run("nack without requeue drops", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("dropping", true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		publish(t, ch, "", "dropping", "a", "b")
		d, ok, err := ch.Get("dropping", false)
		require.NoError(t, err)
		require.True(t, ok)
		require.NoError(t, d.Nack(false, false))
		require.Equal(t, []string{"b"}, getAll(t, ch, "dropping"))
	})

	t.Run("exclusive queue ends with its connection", func(t *testing.T) {
		other := dial(t, srv)
		ch := channel(t, other)
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		require.NoError(t, err)
		require.NotEmpty(t, q.Name)
		require.NoError(t, other.Close())
		ch = channel(t, conn)
		_, err = ch.QueueDeclarePassive(q.Name, false, true, true, false, nil)
		var ae *amqp091.Error
		require.ErrorAs(t, err, &ae)
		require.Equal(t, amqp091.NotFound, ae.Code)
	})

	t.Run("deleting a queue cancels its consumers", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("doomed", true, false, false, false, nil)
		require.NoError(t, err)
		cancels := ch.NotifyCancel(make(chan string, 1))
		_, err = ch.Consume("doomed", "c1", false, false, false, false, nil)
		require.NoError(t, err)
		other := channel(t, conn)
		n, err := other.QueueDelete("doomed", false, false, false)
		require.NoError(t, err)
		require.Zero(t, n)
		select {
		case tag := <-cancels:
			require.Equal(t, "c1", tag)
		case <-time.After(30 * time.Second):
			t.Fatal("no basic.cancel for the consumer of a deleted queue")
		}
	})

	t.Run("per-message and per-queue TTL", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("ttl", true, false, false, false, amqp091.Table{"x-message-ttl": int64(60_000)})
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		ctx := context.Background()
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "ttl", false, false, amqp091.Publishing{Body: []byte("short"), Expiration: "1"})
		require.NoError(t, err)
		require.True(t, conf.Wait())
		publish(t, ch, "", "ttl", "long")
		time.Sleep(20 * time.Millisecond) // the first has expired by then; the second lives a minute
		require.Equal(t, []string{"long"}, getAll(t, ch, "ttl"))
	})

	t.Run("redeclare with another durable is refused", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("stable", true, false, false, false, nil)
		require.NoError(t, err)
		_, err = ch.QueueDeclare("stable", false, false, false, false, nil)
		var ae *amqp091.Error
		require.ErrorAs(t, err, &ae)
		require.Equal(t, amqp091.PreconditionFailed, ae.Code)
	})

	t.Run("fanout, direct and headers exchanges", func(t *testing.T) {
		ch := channel(t, conn)
		require.NoError(t, ch.ExchangeDeclare("fan", "fanout", true, false, false, false, nil))
		require.NoError(t, ch.ExchangeDeclare("hdr", "headers", true, false, false, false, nil))
		for _, q := range []string{"f1", "f2", "h1"} {
			_, err := ch.QueueDeclare(q, true, false, false, false, nil)
			require.NoError(t, err)
		}
		require.NoError(t, ch.QueueBind("f1", "", "fan", false, nil))
		require.NoError(t, ch.QueueBind("f2", "", "fan", false, nil))
		require.NoError(t, ch.QueueBind("f1", "k", "amq.direct", false, nil))
		require.NoError(t, ch.QueueBind("h1", "", "hdr", false, amqp091.Table{"x-match": "all", "kind": "invoice"}))
		require.NoError(t, ch.Confirm(false))
		publish(t, ch, "fan", "ignored", "to-all")
		publish(t, ch, "amq.direct", "k", "direct")
		publish(t, ch, "amq.direct", "other", "nowhere")
		ctx := context.Background()
		for _, kind := range []string{"invoice", "receipt"} {
			conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "hdr", "", false, false, amqp091.Publishing{Headers: amqp091.Table{"kind": kind}, Body: []byte(kind)})
			require.NoError(t, err)
			require.True(t, conf.Wait())
		}
		require.Equal(t, []string{"to-all", "direct"}, getAll(t, ch, "f1"))
		require.Equal(t, []string{"to-all"}, getAll(t, ch, "f2"))
		require.Equal(t, []string{"invoice"}, getAll(t, ch, "h1"))
		require.NoError(t, ch.QueueUnbind("f2", "", "fan", nil))
		publish(t, ch, "fan", "", "after-unbind")
		require.Empty(t, getAll(t, ch, "f2"))
		require.NoError(t, ch.ExchangeDelete("fan", false, false))
		err := ch.ExchangeDeclarePassive("fan", "fanout", true, false, false, false, nil)
		var ae *amqp091.Error
		require.ErrorAs(t, err, &ae)
		require.Equal(t, amqp091.NotFound, ae.Code)
	})

	t.Run("purge", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("purged", true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		publish(t, ch, "", "purged", "1", "2", "3")
		n, err := ch.QueuePurge("purged", false)
		require.NoError(t, err)
		require.Equal(t, 3, n)
		require.Empty(t, getAll(t, ch, "purged"))
	})

	t.Run("AMQPLAIN", func(t *testing.T) {
		c, err := amqp091.DialConfig("amqp://"+srv.AMQPAddr+"/", amqp091.Config{SASL: []amqp091.Authentication{&amqp091.AMQPlainAuth{Username: "guest", Password: "guest"}}})
		require.NoError(t, err)
		require.NoError(t, c.Close())
	})

	t.Run("many messages in order", func(t *testing.T) {
		ch := channel(t, conn)
		_, err := ch.QueueDeclare("ordered", true, false, false, false, nil)
		require.NoError(t, err)
		require.NoError(t, ch.Confirm(false))
		confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 1000))
		const n = 1000
		for i := range n {
			require.NoError(t, ch.PublishWithContext(context.Background(), "", "ordered", false, false, amqp091.Publishing{Body: []byte(fmt.Sprint(i))}))
		}
		for i := range n {
			c := <-confirms
			require.True(t, c.Ack)
			require.Equal(t, uint64(i+1), c.DeliveryTag)
		}
		require.NoError(t, ch.Qos(100, 0, false))
		deliveries, err := ch.Consume("ordered", "", false, false, false, false, nil)
		require.NoError(t, err)
		for i := range n {
			d := receive(t, deliveries)
			require.Equal(t, fmt.Sprint(i), string(d.Body))
			if i%10 == 9 {
				require.NoError(t, d.Ack(true))
			}
		}
	})
}

func TestDeadLetterExchange(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	require.NoError(t, ch.ExchangeDeclare("dlx", "fanout", true, false, false, false, nil))
	_, err := ch.QueueDeclare("dead", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("dead", "", "dlx", false, nil))
	_, err = ch.QueueDeclare("work", true, false, false, false, amqp091.Table{"x-dead-letter-exchange": "dlx"})
	require.NoError(t, err)
	// The default exchange with a routing key, for expired messages.
	_, err = ch.QueueDeclare("expired", true, false, false, false, nil)
	require.NoError(t, err)
	_, err = ch.QueueDeclare("short", true, false, false, false, amqp091.Table{"x-message-ttl": int32(1), "x-dead-letter-exchange": "", "x-dead-letter-routing-key": "expired"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish(t, ch, "", "work", "bad", "good")
	publish(t, ch, "", "short", "stale")

	d, ok, err := ch.Get("work", false)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "bad", string(d.Body))
	require.NoError(t, d.Reject(false))
	require.Equal(t, []string{"good"}, getAll(t, ch, "work"))
	dead, ok, err := ch.Get("dead", true)
	require.NoError(t, err)
	require.True(t, ok, "the rejected message went to the dead-letter exchange")
	require.Equal(t, "bad", string(dead.Body))
	deaths, _ := dead.Headers["x-death"].([]any)
	require.Len(t, deaths, 1)
	death := deaths[0].(amqp091.Table)
	require.Equal(t, "work", death["queue"])
	require.Equal(t, "rejected", death["reason"])
	require.Equal(t, "rejected", dead.Headers["x-first-death-reason"])

	time.Sleep(20 * time.Millisecond) // "stale" lives 1 ms
	require.Empty(t, getAll(t, ch, "short"))
	gone, ok, err := ch.Get("expired", true)
	require.NoError(t, err)
	require.True(t, ok, "the expired message went to the dead-letter routing key")
	require.Equal(t, "stale", string(gone.Body))
	require.Equal(t, "expired", gone.Headers["x-first-death-reason"])
}

func TestAutoDeleteQueue(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("temp", false, true, false, false, nil)
	require.NoError(t, err)
	_, err = ch.Consume("temp", "c", false, false, false, false, nil)
	require.NoError(t, err)
	// Still there while it has a consumer, even after a redeclare.
	_, err = ch.QueueDeclarePassive("temp", false, true, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Cancel("c", false))
	_, err = ch.QueueDeclarePassive("temp", false, true, false, false, nil)
	var ae *amqp091.Error
	require.ErrorAs(t, err, &ae, "the last consumer's cancel deleted the auto-delete queue")
	require.Equal(t, amqp091.NotFound, ae.Code)
}

func TestExchangeToExchangeBindings(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	require.NoError(t, ch.ExchangeDeclare("front", "topic", true, false, false, false, nil))
	require.NoError(t, ch.ExchangeDeclare("back", "fanout", true, false, false, false, nil))
	_, err := ch.QueueDeclare("behind", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.QueueBind("behind", "", "back", false, nil))
	require.NoError(t, ch.ExchangeBind("back", "orders.*", "front", false, nil))
	// A cycle ends: back → front → back.
	require.NoError(t, ch.ExchangeBind("front", "", "back", false, nil))
	require.NoError(t, ch.Confirm(false))
	publish(t, ch, "front", "orders.new", "routed")
	publish(t, ch, "front", "invoices.new", "not routed")
	require.Equal(t, []string{"routed"}, getAll(t, ch, "behind"))
	require.NoError(t, ch.ExchangeUnbind("back", "orders.*", "front", false, nil))
	publish(t, ch, "front", "orders.new", "after unbind")
	require.Empty(t, getAll(t, ch, "behind"))
}

// TestHeartbeats: a client that asked for 1 s heartbeats and sends nothing
// for 3 s is still connected, because the server sends heartbeats (the
// client closes a connection that hears nothing for three intervals).
func TestHeartbeats(t *testing.T) {
	srv := testserver.Start(t)
	conn, err := amqp091.DialConfig("amqp://guest:guest@"+srv.AMQPAddr+"/", amqp091.Config{Heartbeat: time.Second})
	require.NoError(t, err)
	defer conn.Close()
	closed := conn.NotifyClose(make(chan *amqp091.Error, 1))
	time.Sleep(3500 * time.Millisecond)
	select {
	case err := <-closed:
		t.Fatalf("the connection closed while idle: %v", err)
	default:
	}
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("alive", true, false, false, false, nil)
	require.NoError(t, err)
}

func TestMaxLength(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("capped", true, false, false, false, amqp091.Table{"x-max-length": int32(3)})
	require.NoError(t, err)
	_, err = ch.QueueDeclare("strict", true, false, false, false, amqp091.Table{"x-max-length": int32(2), "x-overflow": "reject-publish"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish(t, ch, "", "capped", "1", "2", "3", "4", "5")
	require.Equal(t, []string{"3", "4", "5"}, getAll(t, ch, "capped"), "drop-head: the oldest left")

	ctx := context.Background()
	var acks []bool
	for _, b := range []string{"a", "b", "c"} {
		conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "strict", false, false, amqp091.Publishing{Body: []byte(b)})
		require.NoError(t, err)
		ok, err := conf.WaitContext(ctx)
		require.NoError(t, err)
		acks = append(acks, ok)
	}
	require.Equal(t, []bool{true, true, false}, acks, "reject-publish: the third is nacked")
	require.Equal(t, []string{"a", "b"}, getAll(t, ch, "strict"))
}

func TestEmptyQueueNameIsTheLastDeclared(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("", false, false, false, false, nil)
	var ae *amqp091.Error
	require.NoError(t, err)
	q, err := ch.QueueDeclare("named-last", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	publish(t, ch, "", "named-last", "x")
	d, ok, err := ch.Get("", true)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "x", string(d.Body))
	n, err := ch.QueuePurge("", false)
	require.NoError(t, err)
	require.Zero(t, n)
	_ = q
	other := channel(t, conn)
	_, _, err = other.Get("", true)
	require.ErrorAs(t, err, &ae, "a channel that declared nothing has no last queue")
	require.Equal(t, amqp091.NotFound, ae.Code)
}

// A message ingest refuses (here: a DMS tag with a space) is nacked alone;
// the messages around it are stored.
func TestInvalidMessageNackedAlone(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	_, err := ch.QueueDeclare("mixed", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	ctx := context.Background()
	var confs []*amqp091.DeferredConfirmation
	for i, tags := range []string{"ok", "not a tag", "fine"} {
		c, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", "mixed", false, false, amqp091.Publishing{Headers: amqp091.Table{"dms-tags": tags}, Body: []byte(fmt.Sprint(i))})
		require.NoError(t, err)
		confs = append(confs, c)
	}
	var acked []bool
	for _, c := range confs {
		ok, err := c.WaitContext(ctx)
		require.NoError(t, err)
		acked = append(acked, ok)
	}
	require.Equal(t, []bool{true, false, true}, acked)
	require.Equal(t, []string{"0", "2"}, getAll(t, ch, "mixed"))
}

// x-expires: a queue unused for its period goes; one with a consumer stays
// until the consumer leaves; publishes do not keep a queue alive.
func TestQueueExpires(t *testing.T) {
	srv := testserver.Start(t)
	conn := dial(t, srv)
	ch := channel(t, conn)
	args := amqp091.Table{"x-expires": int32(1500)}
	for _, q := range []string{"idle", "consumed"} {
		_, err := ch.QueueDeclare(q, true, false, false, false, args)
		require.NoError(t, err)
	}
	_, err := ch.QueueDeclare("bad", true, false, false, false, amqp091.Table{"x-expires": int32(0)})
	var ae *amqp091.Error
	require.ErrorAs(t, err, &ae)
	require.Equal(t, amqp091.PreconditionFailed, ae.Code)

	consumer := channel(t, conn)
	_, err = consumer.Consume("consumed", "c", false, false, false, false, nil)
	require.NoError(t, err)
	ch = channel(t, conn)
	require.NoError(t, ch.Confirm(false))
	exists := func(q string) bool {
		_, err := srv.Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: "projects/" + server.DefaultProject + "/queues/" + q})
		return err == nil
	}
	gone := make(chan struct{})
	go func() {
		// Publishing is not a use.
		defer close(gone)
		for exists("idle") {
			_ = ch.PublishWithContext(context.Background(), "", "idle", false, false, amqp091.Publishing{Body: []byte("x")})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	select {
	case <-gone:
	case <-time.After(60 * time.Second):
		t.Fatal("the unused queue with x-expires 1.5 s is still there after a minute")
	}
	// The consumed one was declared at the same time: it must still be here.
	require.True(t, exists("consumed"), "a queue with a consumer expired")
	require.NoError(t, consumer.Cancel("c", false))
	require.Eventually(t, func() bool { return !exists("consumed") }, 60*time.Second, 100*time.Millisecond)
}
