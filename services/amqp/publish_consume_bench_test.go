package amqp_test

import (
	"context"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/testserver"
)

// BenchmarkPublishConsume publishes b.N 1 KiB persistent messages with
// confirms (in windows of 100) and consumes them with prefetch 200 and one
// multiple-ack per 100, as dms-bench's rabbitmq drivers do.
func BenchmarkPublishConsume(b *testing.B) {
	srv := testserver.Start(b)
	conn, err := amqp091.Dial("amqp://guest:guest@" + srv.AMQPAddr + "/")
	require.NoError(b, err)
	defer conn.Close()
	pub, err := conn.Channel()
	require.NoError(b, err)
	_, err = pub.QueueDeclare("bench", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(b, err)
	require.NoError(b, pub.Confirm(false))
	body := make([]byte, 1024)
	ctx := context.Background()
	b.ResetTimer()
	b.Run("publish", func(b *testing.B) {
		for i := 0; i < b.N; i += 100 {
			var confs []*amqp091.DeferredConfirmation
			for j := i; j < min(i+100, b.N); j++ {
				c, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", "bench", false, false, amqp091.Publishing{DeliveryMode: 2, Body: body})
				require.NoError(b, err)
				confs = append(confs, c)
			}
			for _, c := range confs {
				require.True(b, c.Wait())
			}
		}
		b.SetBytes(1024)
	})
	b.Run("consume", func(b *testing.B) {
		cons, err := conn.Channel()
		require.NoError(b, err)
		require.NoError(b, cons.Qos(200, 0, false))
		// Fill the queue first, unmeasured.
		b.StopTimer()
		for i := 0; i < b.N; i += 100 {
			var confs []*amqp091.DeferredConfirmation
			for j := i; j < min(i+100, b.N); j++ {
				c, _ := pub.PublishWithDeferredConfirmWithContext(ctx, "", "bench", false, false, amqp091.Publishing{DeliveryMode: 2, Body: body})
				confs = append(confs, c)
			}
			for _, c := range confs {
				c.Wait()
			}
		}
		_, _ = cons.QueuePurge("bench", false)
		for i := 0; i < b.N; i += 100 {
			var confs []*amqp091.DeferredConfirmation
			for j := i; j < min(i+100, b.N); j++ {
				c, _ := pub.PublishWithDeferredConfirmWithContext(ctx, "", "bench", false, false, amqp091.Publishing{DeliveryMode: 2, Body: body})
				confs = append(confs, c)
			}
			for _, c := range confs {
				c.Wait()
			}
		}
		b.StartTimer()
		ds, err := cons.Consume("bench", "", false, false, false, false, nil)
		require.NoError(b, err)
		for i := range b.N {
			d := <-ds
			if i%100 == 99 || i == b.N-1 {
				require.NoError(b, d.Ack(true))
			}
		}
		b.SetBytes(1024)
		cons.Close()
	})
}

// BenchmarkPublishAuth is the publish half of BenchmarkPublishConsume
// with authentication on, as pete, a producer of the default project:
// every publish is decided by authz for the queue it routes to.
//
//	go test -run x -bench 'BenchmarkPublishAuth|BenchmarkPublishConsume' -benchtime 20000x ./amqp/
func BenchmarkPublishAuth(b *testing.B) {
	w := startAuth(b)
	admin := w.mustDial(b, "admin", "/")
	ach, err := admin.Channel()
	require.NoError(b, err)
	_, err = ach.QueueDeclare("bench", true, false, false, false, amqp091.Table{"x-queue-type": "quorum"})
	require.NoError(b, err)
	pub, err := w.mustDial(b, "pete", "/").Channel()
	require.NoError(b, err)
	require.NoError(b, pub.Confirm(false))
	body := make([]byte, 1024)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i += 100 {
		var confs []*amqp091.DeferredConfirmation
		for j := i; j < min(i+100, b.N); j++ {
			c, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", "bench", false, false, amqp091.Publishing{DeliveryMode: 2, Body: body})
			require.NoError(b, err)
			confs = append(confs, c)
		}
		for _, c := range confs {
			require.True(b, c.Wait())
		}
	}
	b.SetBytes(1024)
}
