package kafka_test

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/server"
)

// queueNamed returns the default project's queue with a display name.
func queueNamed(t testing.TB, queues dmsv1.QueueServiceClient, name string) *dmsv1.Queue {
	t.Helper()
	resp, err := queues.ListQueues(ctxT(t), &dmsv1.ListQueuesRequest{Parent: catalog.ProjectResource(server.DefaultProject)})
	require.NoError(t, err)
	for _, q := range resp.GetQueues() {
		if q.GetDisplayName() == name {
			return q
		}
	}
	t.Fatalf("no queue %q", name)
	return nil
}

// TestKafkaProducedConsumedByDMSGroup produces with a Kafka client (zstd
// batches, keys, headers, tags) and consumes with a DMS consumer group
// over gRPC, with per-message acks: a message failed is delivered again,
// acked ones are not.
func TestKafkaProducedConsumedByDMSGroup(t *testing.T) {
	srv := startServer(t)
	topic := "k2dms"
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	const n = 30
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{
			Key: fmt.Appendf(nil, "key-%d", i%4), Value: fmt.Appendf(nil, "m%02d", i),
			Headers: []kgo.RecordHeader{{Key: "color", Value: []byte("blue")}, {Key: "dms.tags", Value: []byte("a,b")}},
		})
	}
	produceAll(t, cl, recs...)

	q := queueNamed(t, srv.Queues(), topic)
	g := srv.CreateGroup(t, q, "natives")
	var got []*dmsv1.ReceivedMessage
	require.Eventually(t, func() bool {
		got = append(got, srv.Receive(t, g, n, time.Minute)...)
		return len(got) >= n
	}, 20*time.Second, 20*time.Millisecond)
	require.Len(t, got, n)
	bodies := testserverBodies(got)
	sort.Strings(bodies)
	for i := range n {
		require.Equal(t, fmt.Sprintf("m%02d", i), bodies[i])
	}
	for _, m := range got {
		msg := m.GetMessage()
		require.Regexp(t, `^key-[0-3]$`, msg.GetOrderingKey())
		require.Equal(t, "blue", msg.GetAttributes()["color"].GetStringValue())
		require.Equal(t, []string{"a", "b"}, msg.GetTags())
		require.NotEmpty(t, m.GetMessageId())
	}

	// Ack all but one, fail that one: it comes back, the others do not.
	var failed *dmsv1.ReceivedMessage
	var acked []*dmsv1.ReceivedMessage
	for _, m := range got {
		if failed == nil && string(m.GetMessage().GetBody()) == "m07" {
			failed = m
			continue
		}
		acked = append(acked, m)
	}
	for _, r := range srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, acked...) {
		require.True(t, r.GetApplied(), "ack: %s", r.GetErrorMessage())
	}
	for _, r := range srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, failed) {
		require.True(t, r.GetApplied(), r.GetErrorMessage())
	}
	var again []*dmsv1.ReceivedMessage
	require.Eventually(t, func() bool {
		again = append(again, srv.Receive(t, g, n, time.Minute)...)
		return len(again) >= 1
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"m07"}, testserverBodies(again))
	require.Equal(t, failed.GetMessageId(), again[0].GetMessageId(), "a Kafka record keeps its message id")
}

func testserverBodies(msgs []*dmsv1.ReceivedMessage) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.GetMessage().GetBody())
	}
	return out
}

// TestNativeProducedConsumedByKafka sends messages through the DMS API to
// a KAFKA_HA queue and reads them with a Kafka consumer assigned to its
// partitions: body → value, ordering key → key, attributes → headers,
// tags → the dms.tags header, offsets as the send answered.
func TestNativeProducedConsumedByKafka(t *testing.T) {
	srv := startServer(t)
	q := srv.CreateQueue(t, server.DefaultProject, &dmsv1.Queue{DisplayName: "dms2k", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: 2})
	const n = 12
	msgs := make([]*dmsv1.Message, n)
	for i := range msgs {
		msgs[i] = &dmsv1.Message{
			Body: fmt.Appendf(nil, "n%02d", i), OrderingKey: fmt.Sprintf("ok-%d", i%3), Tags: []string{"x", "y"},
			Attributes: map[string]*dmsv1.AttributeValue{
				"s": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "text"}},
				"i": {Kind: &dmsv1.AttributeValue_IntValue{IntValue: -42}},
				"d": {Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: 2.5}},
				"b": {Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: true}},
			},
		}
	}
	sent, err := srv.Producer().SendMessages(ctxT(t), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
	require.NoError(t, err)
	where := map[string]*dmsv1.SendResult{}
	for i, r := range sent.GetResults() {
		where[fmt.Sprintf("n%02d", i)] = r
	}

	got := consumeN(t, srv.KafkaAddr, "dms2k", []int32{0, 1}, n)
	require.Len(t, got, n)
	for _, r := range got {
		res := where[string(r.Value)]
		require.NotNil(t, res, "record %q", r.Value)
		require.Equal(t, res.GetPartition(), r.Partition)
		require.Equal(t, res.GetOffset(), r.Offset)
		require.Regexp(t, `^ok-[0-2]$`, string(r.Key))
		require.Equal(t, []kgo.RecordHeader{
			{Key: "b", Value: []byte("true")}, {Key: "d", Value: []byte("2.5")}, {Key: "i", Value: []byte("-42")},
			{Key: "s", Value: []byte("text")}, {Key: "dms.tags", Value: []byte("x,y")},
		}, r.Headers)
		require.False(t, r.Timestamp.IsZero())
	}
}

// TestKafkaProducedDeadLetters produces with a Kafka client to a KAFKA_HA
// queue with dead letters on; a DMS consumer group fails a record until it
// is a dead letter, which keeps the record's key, headers and offset.
func TestKafkaProducedDeadLetters(t *testing.T) {
	srv := startServer(t)
	q := srv.CreateQueue(t, server.DefaultProject, &dmsv1.Queue{DisplayName: "poisoned", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: 1, DeadLetterEnabled: true, MaxConsumeCount: 2})
	g := srv.CreateGroup(t, q, "g")
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic("poisoned"), kgo.ProducerBatchCompression(kgo.GzipCompression()))
	produceAll(t, cl, &kgo.Record{Key: []byte("pk"), Value: []byte("poison"), Headers: []kgo.RecordHeader{{Key: "why", Value: []byte("test")}}},
		&kgo.Record{Value: []byte("fine")})

	var poison *dmsv1.ReceivedMessage
	for attempt := range 2 {
		var got []*dmsv1.ReceivedMessage
		require.Eventually(t, func() bool {
			got = append(got, srv.Receive(t, g, 10, time.Minute)...)
			for _, m := range got {
				if string(m.GetMessage().GetBody()) == "poison" {
					poison = m
					return true
				}
			}
			return false
		}, 20*time.Second, 20*time.Millisecond, "attempt %d", attempt)
		var fine []*dmsv1.ReceivedMessage
		for _, m := range got {
			if m != poison {
				fine = append(fine, m)
			}
		}
		if len(fine) > 0 {
			srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, fine...)
		}
		for _, r := range srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, poison) {
			require.True(t, r.GetApplied(), r.GetErrorMessage())
		}
	}
	var dl []*dmsv1.ReceivedMessage
	require.Eventually(t, func() bool {
		resp, err := srv.Consumer().ReceiveDeadLetters(ctxT(t), &dmsv1.ReceiveDeadLettersRequest{Group: g.GetName(), MaxMessages: 10})
		require.NoError(t, err)
		dl = resp.GetMessages()
		return len(dl) == 1
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, "poison", string(dl[0].GetMessage().GetBody()))
	require.Equal(t, "pk", dl[0].GetMessage().GetOrderingKey())
	require.Equal(t, "test", dl[0].GetMessage().GetAttributes()["why"].GetStringValue())
	require.Equal(t, poison.GetOffset(), dl[0].GetDeadLetter().GetSourceOffset())
	require.Equal(t, poison.GetMessageId(), dl[0].GetMessageId())
}

// TestKafkaProducedTagFilters filters Kafka-produced records by their
// dms.tags header in a DMS consumer group, while a Kafka consumer of the
// same log still reads every record.
func TestKafkaProducedTagFilters(t *testing.T) {
	srv := startServer(t)
	topic := "tagged"
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	tagged := func(value, tags string) *kgo.Record {
		r := &kgo.Record{Value: []byte(value)}
		if tags != "" {
			r.Headers = []kgo.RecordHeader{{Key: "dms.tags", Value: []byte(tags)}}
		}
		return r
	}
	produceAll(t, cl, tagged("r1", "red"), tagged("b1", "blue"), tagged("none", ""), tagged("rb", "blue,red"))

	g := srv.CreateGroup(t, queueNamed(t, srv.Queues(), topic), "reds")
	var got []string
	require.Eventually(t, func() bool {
		resp, err := srv.Consumer().ReceiveMessages(ctxT(t), &dmsv1.ReceiveMessagesRequest{
			Group: g.GetName(), MaxMessages: 10, VisibilityTimeout: durationpb.New(time.Minute), TagFilter: &dmsv1.TagFilter{Tags: []string{"red"}},
		})
		require.NoError(t, err)
		got = append(got, testserverBodies(resp.GetMessages())...)
		return len(got) >= 2
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"r1", "rb"}, got)
	require.Len(t, consumeN(t, srv.KafkaAddr, topic, []int32{0}, 4), 4, "Kafka consumers see the whole log")
}
