package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// Produced batches count against the project's quotas as native sends do
// (issue 15), answered in Kafka's terms: a record over the project's
// largest message is MESSAGE_TOO_LARGE; a batch that takes the rate's
// last tokens is stored and answered with throttle_time_ms (KIP-219); one
// over the rate waits for it and, when the request's timeout ends first,
// is THROTTLING_QUOTA_EXCEEDED (retriable). Refused batches store nothing.
func TestProduceQuotas(t *testing.T) {
	clock := testserver.NewClock(time.Now()) // the buckets refill only when the test says
	srv := testserver.Start(t, testserver.WithClock(clock))
	c := dialRaw(t, srv.KafkaAddr)
	topic := "quota"
	require.Zero(t, produceRaw(c, topic, rawBatch(t, -1, 0, 0, "before")).ErrorCode)
	_, err := srv.Queues().UpdateProjectQuotas(context.Background(), &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + server.DefaultProject,
		Quotas: &dmsv1.ProjectQuotas{MaxQueues: 30, MaxGroupsPerQueue: 3, MaxMessageBytes: 1000, SendMessagesPerSecond: 3}})
	require.NoError(t, err)

	big := rawBatch(t, -1, 0, 0, "small", string(make([]byte, 1001)))
	p := produceRaw(c, topic, big)
	require.Equal(t, kerr.MessageTooLarge.Code, p.ErrorCode, "record 1 is larger than the project's max_message_bytes")
	require.Contains(t, *p.ErrorMessage, "message 1 is")
	require.Equal(t, int64(1), highWatermark(t, c, topic))

	// 3 messages/s, a bucket of one second's worth; the clock stands still.
	resp := c.roundTrip(produceRequest(topic, 0, rawBatch(t, -1, 0, 0, "a", "b", "c"))).(*kmsg.ProduceResponse)
	require.Zero(t, resp.Topics[0].Partitions[0].ErrorCode)
	require.Positive(t, resp.ThrottleMillis, "the rate is used up: the client backs off")

	req := produceRequest(topic, 0, rawBatch(t, -1, 0, 0, "over"))
	req.TimeoutMillis = 1500
	resp = c.roundTrip(req).(*kmsg.ProduceResponse)
	p = resp.Topics[0].Partitions[0]
	require.Equal(t, kerr.ThrottlingQuotaExceeded.Code, p.ErrorCode, "over the rate until the timeout")
	require.Equal(t, int64(4), highWatermark(t, c, topic), "nothing stored")

	clock.Advance(time.Second)
	require.Zero(t, produceRaw(c, topic, rawBatch(t, -1, 0, 0, "again")).ErrorCode, "the bucket filled again")
	require.Equal(t, int64(5), highWatermark(t, c, topic))

	// Stored bytes: measured in the background, so refused once measured.
	_, err = srv.Queues().UpdateProjectQuotas(context.Background(), &dmsv1.UpdateProjectQuotasRequest{Name: "projects/" + server.DefaultProject,
		Quotas: &dmsv1.ProjectQuotas{MaxQueues: 30, MaxGroupsPerQueue: 3, MaxMessageBytes: 1000, MaxStoredBytes: 1}})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return produceRaw(c, topic, rawBatch(t, -1, 0, 0, "full?")).ErrorCode == kerr.PolicyViolation.Code
	}, time.Minute, 100*time.Millisecond, "POLICY_VIOLATION once the project stores its max_stored_bytes")
	hw := highWatermark(t, c, topic)
	p = produceRaw(c, topic, rawBatch(t, -1, 0, 0, "full"))
	require.Equal(t, kerr.PolicyViolation.Code, p.ErrorCode)
	require.Contains(t, *p.ErrorMessage, "STORAGE_QUOTA_EXCEEDED")
	require.Equal(t, hw, highWatermark(t, c, topic), "nothing stored")
}
