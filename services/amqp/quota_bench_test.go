package amqp_test

import (
	"context"
	"testing"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// BenchmarkPublishUnderQuota is BenchmarkPublishConsume's publish with the
// project's quotas set (rates far above what it sends, a size limit): what
// the admission check (a map lookup and the token buckets) costs a
// publish. Compare with BenchmarkPublishConsume/publish.
func BenchmarkPublishUnderQuota(b *testing.B) {
	srv := testserver.Start(b)
	_, err := srv.Queues().UpdateProjectQuotas(context.Background(), &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + server.DefaultProject,
		Quotas: &dmsv1.ProjectQuotas{MaxQueues: 30, MaxGroupsPerQueue: 3, MaxMessageBytes: 64 * 1024, SendMessagesPerSecond: 1 << 30, SendBytesPerSecond: 1 << 40}})
	require.NoError(b, err)
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
