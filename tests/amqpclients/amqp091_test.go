package amqpclients_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
)

// amqp091Result is what the amqp091-go scenario saw.
type amqp091Result struct {
	// Confirms are the delivery tags acked, in order, of 20 publishes
	// and one mandatory publish that routes nowhere.
	Confirms []uint64
	// Returned is the routing key and reply code of the returned message.
	Returned string
	// Held are the bodies a consumer with prefetch 2 got before acking;
	// Got what basic.get took meanwhile on another channel.
	Held []string
	Got  string
	// Requeued is the nacked (requeue) message as it came back.
	Requeued string
	// Consumed is every body the consumer acked, sorted.
	Consumed []string
	// Routed are the bodies each queue got through each exchange type.
	Routed map[string][]string
	Left   int
}

func amqp091Scenario(t *testing.T, addr, name string) amqp091Result {
	t.Helper()
	ctx := context.Background()
	conn, err := amqp091.Dial("amqp://guest:guest@" + addr + "/")
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare(name, true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	require.NoError(t, ch.Confirm(false))
	confirms := ch.NotifyPublish(make(chan amqp091.Confirmation, 64))
	returns := ch.NotifyReturn(make(chan amqp091.Return, 4))
	var res amqp091Result
	const n = 20
	for i := range n {
		require.NoError(t, ch.PublishWithContext(ctx, "", name, true, false, amqp091.Publishing{DeliveryMode: amqp091.Persistent, Body: []byte(fmt.Sprintf("g%02d", i))}))
	}
	require.NoError(t, ch.PublishWithContext(ctx, "", name+"-missing", true, false, amqp091.Publishing{Body: []byte("lost")}))
	for range n + 1 {
		select {
		case c := <-confirms:
			if c.Ack {
				res.Confirms = append(res.Confirms, c.DeliveryTag)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a confirm did not come")
		}
	}
	select {
	case r := <-returns:
		res.Returned = fmt.Sprintf("%s %d %s", r.RoutingKey, r.ReplyCode, r.ReplyText)
	case <-time.After(30 * time.Second):
		t.Fatal("the mandatory message was not returned")
	}

	// Prefetch 2: the consumer holds two, basic.get takes the third.
	cons, err := conn.Channel()
	require.NoError(t, err)
	require.NoError(t, cons.Qos(2, 0, false))
	deliveries, err := cons.Consume(name, "", false, false, false, false, nil)
	require.NoError(t, err)
	next := func() amqp091.Delivery {
		select {
		case d := <-deliveries:
			return d
		case <-time.After(30 * time.Second):
			t.Fatal("no delivery")
		}
		return amqp091.Delivery{}
	}
	first, second := next(), next()
	res.Held = []string{string(first.Body), string(second.Body)}
	d, ok, err := ch.Get(name, false)
	require.NoError(t, err)
	require.True(t, ok)
	res.Got = string(d.Body)
	require.NoError(t, d.Ack(false))
	// Nack with requeue: it comes back, redelivered. (Where: DMS hands it
	// out next, RabbitMQ's quorum queues after what is ready; the README
	// lists it, and the scenario records whether, not when.)
	require.NoError(t, first.Nack(false, true))
	require.NoError(t, second.Ack(false))
	res.Consumed = append(res.Consumed, string(second.Body))
	for len(res.Consumed) < n-1 {
		d := next()
		if string(d.Body) == string(first.Body) {
			res.Requeued = fmt.Sprintf("%s redelivered=%v", d.Body, d.Redelivered)
		}
		res.Consumed = append(res.Consumed, string(d.Body))
		require.NoError(t, d.Ack(false))
	}
	sort.Strings(res.Consumed)
	require.NoError(t, cons.Close())

	// Exchange types.
	exchanges := map[string]string{"direct": "direct", "fanout": "fanout", "topic": "topic", "headers": "headers"}
	queues := []string{"a", "b", "c"}
	for ex, typ := range exchanges {
		require.NoError(t, ch.ExchangeDeclare(name+"-"+ex, typ, true, false, false, false, nil))
	}
	for _, q := range queues {
		_, err := ch.QueueDeclare(name+"-"+q, true, false, false, false, nil)
		require.NoError(t, err)
	}
	bind := func(q, key, ex string, args amqp091.Table) {
		require.NoError(t, ch.QueueBind(name+"-"+q, key, name+"-"+ex, false, args))
	}
	bind("a", "red", "direct", nil)
	bind("b", "blue", "direct", nil)
	bind("a", "", "fanout", nil)
	bind("b", "", "fanout", nil)
	bind("a", "eu.*.orders", "topic", nil)
	bind("b", "#.orders", "topic", nil)
	bind("c", "us.#", "topic", nil)
	bind("a", "", "headers", amqp091.Table{"x-match": "all", "kind": "invoice", "region": "eu"})
	bind("c", "", "headers", amqp091.Table{"x-match": "any", "kind": "invoice", "region": "us"})
	pub := func(ex, key, body string, headers amqp091.Table) {
		require.NoError(t, ch.PublishWithContext(ctx, name+"-"+ex, key, false, false, amqp091.Publishing{Headers: headers, Body: []byte(body)}))
		select {
		case c := <-confirms:
			require.True(t, c.Ack)
		case <-time.After(30 * time.Second):
			t.Fatal("a confirm did not come")
		}
	}
	pub("direct", "red", "d-red", nil)
	pub("direct", "green", "d-green", nil)
	pub("fanout", "whatever", "f-all", nil)
	pub("topic", "eu.fr.orders", "t-eu-fr", nil)
	pub("topic", "us.ny.orders", "t-us-ny", nil)
	pub("topic", "eu.orders", "t-eu", nil)
	pub("headers", "", "h-eu-invoice", amqp091.Table{"kind": "invoice", "region": "eu"})
	pub("headers", "", "h-us-receipt", amqp091.Table{"kind": "receipt", "region": "us"})
	pub("headers", "", "h-eu-receipt", amqp091.Table{"kind": "receipt", "region": "eu"})
	res.Routed = map[string][]string{}
	for _, q := range queues {
		for {
			d, ok, err := ch.Get(name+"-"+q, true)
			require.NoError(t, err)
			if !ok {
				break
			}
			res.Routed[q] = append(res.Routed[q], string(d.Body))
		}
	}
	q, err := ch.QueueDeclarePassive(name, true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(t, err)
	res.Left = q.Messages
	return res
}

func checkAmqp091(t *testing.T, r any) {
	res := r.(amqp091Result)
	var tags []uint64
	for i := range 21 {
		tags = append(tags, uint64(i+1))
	}
	require.Equal(t, tags, res.Confirms, "every publish acked, the returned one too")
	require.Equal(t, "amqp091-go-missing 312 NO_ROUTE", res.Returned[len(res.Returned)-len("amqp091-go-missing 312 NO_ROUTE"):])
	require.Equal(t, []string{"g00", "g01"}, res.Held)
	require.Equal(t, "g02", res.Got)
	require.Equal(t, "g00 redelivered=true", res.Requeued)
	var all []string
	for i := range 20 {
		if i != 2 {
			all = append(all, fmt.Sprintf("g%02d", i))
		}
	}
	require.Equal(t, all, res.Consumed)
	require.Equal(t, map[string][]string{
		"a": {"d-red", "f-all", "t-eu-fr", "h-eu-invoice"},
		"b": {"f-all", "t-eu-fr", "t-us-ny", "t-eu"},
		"c": {"t-us-ny", "h-eu-invoice", "h-us-receipt"},
	}, res.Routed)
	require.Zero(t, res.Left)
}
