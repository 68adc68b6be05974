package amqp_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/testserver"
)

// BenchmarkE2E runs four publishers (confirms in windows of 100) and one
// consumer (prefetch 200, a multiple-ack per 100) on one queue at once and
// reports both rates.
func BenchmarkE2E(b *testing.B) {
	srv := testserver.Start(b)
	conn, err := amqp091.Dial("amqp://guest:guest@" + srv.AMQPAddr + "/")
	require.NoError(b, err)
	defer conn.Close()
	pub, err := conn.Channel()
	require.NoError(b, err)
	_, err = pub.QueueDeclare("e2e", true, false, false, false, nil)
	require.NoError(b, err)
	require.NoError(b, pub.Confirm(false))
	body := make([]byte, 1024)
	ctx := context.Background()
	var stop atomic.Bool
	var sent atomic.Int64
	for range 4 {
		pc, err := amqp091.Dial("amqp://guest:guest@" + srv.AMQPAddr + "/")
		require.NoError(b, err)
		defer pc.Close()
		pub, err := pc.Channel()
		require.NoError(b, err)
		require.NoError(b, pub.Confirm(false))
		go func() {
			for !stop.Load() {
				var confs []*amqp091.DeferredConfirmation
				for range 100 {
					c, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", "e2e", false, false, amqp091.Publishing{DeliveryMode: 2, Body: body})
					if err != nil {
						return
					}
					confs = append(confs, c)
				}
				for _, c := range confs {
					c.Wait()
				}
				sent.Add(100)
			}
		}()
	}
	c2, err := amqp091.Dial("amqp://guest:guest@" + srv.AMQPAddr + "/")
	require.NoError(b, err)
	defer c2.Close()
	cons, err := c2.Channel()
	require.NoError(b, err)
	require.NoError(b, cons.Qos(200, 0, false))
	ds, err := cons.Consume("e2e", "", false, false, false, false, nil)
	require.NoError(b, err)
	start := time.Now()
	b.ResetTimer()
	for i := range b.N {
		d := <-ds
		if i%100 == 99 || i == b.N-1 {
			require.NoError(b, d.Ack(true))
		}
	}
	stop.Store(true)
	b.ReportMetric(float64(sent.Load())/time.Since(start).Seconds(), "sent/s")
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "recv/s")
}
