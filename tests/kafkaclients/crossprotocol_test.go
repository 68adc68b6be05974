package kafkaclients_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// TestSaramaProducedConsumedByDMSGroup produces with sarama (lz4, keys,
// headers) to a KAFKA_HA queue made with the native API with dead letters
// on, and consumes it with a DMS consumer group over gRPC: acked messages
// are done, a message failed twice becomes the group's dead letter, and a
// Kafka consumer group on the same topic still reads every record.
func TestSaramaProducedConsumedByDMSGroup(t *testing.T) {
	srv := startServer(t)
	q := srv.CreateQueue(t, server.DefaultProject, &dmsv1.Queue{
		DisplayName: "sarama-to-dms", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: 3,
		DeadLetterEnabled: true, MaxConsumeCount: 2,
	})
	const n = 40
	saramaProduce(t, srv.KafkaAddr, q.GetDisplayName(), "x", n, sarama.CompressionLZ4)

	g := srv.CreateGroup(t, q, "natives")
	got := receiveN(t, srv, g, n)
	require.Equal(t, expectedValues("x", n), valueSet(t, testserver.Bodies(got)))
	var poison *dmsv1.ReceivedMessage
	var rest []*dmsv1.ReceivedMessage
	for _, m := range got {
		require.Regexp(t, `^k[0-4]$`, m.GetMessage().GetOrderingKey(), "the record key is the ordering key")
		require.NotEmpty(t, m.GetMessage().GetAttributes()["i"].GetStringValue(), "headers are attributes")
		if string(m.GetMessage().GetBody()) == "x-007" {
			poison = m
		} else {
			rest = append(rest, m)
		}
	}
	require.NotNil(t, poison)
	for _, r := range srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, rest...) {
		require.True(t, r.GetApplied())
	}
	// Failed twice (MaxConsumeCount 2): a dead letter of the group.
	require.True(t, srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, poison)[0].GetApplied())
	again := receiveN(t, srv, g, 1)
	require.Equal(t, []string{"x-007"}, testserver.Bodies(again))
	require.EqualValues(t, 2, again[0].GetDeliveryCount())
	require.True(t, srv.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_FAIL, again...)[0].GetApplied())
	var dead []*dmsv1.ReceivedMessage
	require.Eventually(t, func() bool {
		resp, err := srv.Consumer().ReceiveDeadLetters(ctxT(t), &dmsv1.ReceiveDeadLettersRequest{Group: g.GetName(), MaxMessages: 10})
		require.NoError(t, err)
		dead = append(dead, resp.GetMessages()...)
		return len(dead) > 0
	}, 20*time.Second, 20*time.Millisecond)
	require.Equal(t, []string{"x-007"}, testserver.Bodies(dead))
	require.EqualValues(t, 2, dead[0].GetDeadLetter().GetFailureCount())
	require.Equal(t, poison.GetOffset(), dead[0].GetDeadLetter().GetSourceOffset())
	require.Empty(t, srv.Receive(t, g, 10, time.Minute), "every message is settled")

	// The Kafka side is untouched by the DMS group: a Kafka group reads all.
	member, _ := joinSarama(t, srv.KafkaAddr, "kafka-side", q.GetDisplayName())
	require.Eventually(t, func() bool { return len(member.seen()) >= n }, 30*time.Second, 20*time.Millisecond)
	require.Equal(t, expectedValues("x", n), valueSet(t, member.seen()))
}

// queueNamed returns the default project's queue with a display name.
func queueNamed(t *testing.T, srv *testserver.Server, name string) *dmsv1.Queue {
	t.Helper()
	resp, err := srv.Queues().ListQueues(ctxT(t), &dmsv1.ListQueuesRequest{Parent: "projects/" + server.DefaultProject})
	require.NoError(t, err)
	for _, q := range resp.GetQueues() {
		if q.GetDisplayName() == name {
			return q
		}
	}
	t.Fatalf("no queue %q", name)
	return nil
}

func receiveN(t *testing.T, srv *testserver.Server, g *dmsv1.ConsumerGroup, n int) []*dmsv1.ReceivedMessage {
	t.Helper()
	var got []*dmsv1.ReceivedMessage
	require.Eventually(t, func() bool {
		got = append(got, srv.Receive(t, g, n-len(got), time.Minute)...)
		return len(got) >= n
	}, 20*time.Second, 20*time.Millisecond)
	require.Len(t, got, n)
	return got
}

// TestNativeSendsConsumedByKafkaGoGroup sends with the native gRPC API to a
// KAFKA_HT queue and consumes with a segmentio/kafka-go group reader, which
// gets each message once with its ordering key as the record key and its
// attributes as headers, at the offsets the sends answered, and commits to
// the end.
func TestNativeSendsConsumedByKafkaGoGroup(t *testing.T) {
	srv := startServer(t)
	q := srv.CreateQueue(t, server.DefaultProject, &dmsv1.Queue{DisplayName: "native-to-kafkago", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT, PartitionCount: 2})
	const n = 50
	msgs := make([]*dmsv1.Message, n)
	for i := range msgs {
		msgs[i] = &dmsv1.Message{
			Body: fmt.Appendf(nil, "n-%03d", i), OrderingKey: fmt.Sprintf("key-%d", i%3),
			Attributes: map[string]*dmsv1.AttributeValue{"color": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "red"}}},
		}
	}
	resp, err := srv.Producer().SendMessages(ctxT(t), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: msgs})
	require.NoError(t, err)
	sentAt := map[string]string{}
	for i, r := range resp.GetResults() {
		sentAt[fmt.Sprintf("n-%03d", i)] = fmt.Sprintf("%d/%d", r.GetPartition(), r.GetOffset())
	}

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{srv.KafkaAddr}, GroupID: "kafkago-natives", Topic: q.GetDisplayName(), StartOffset: kafka.FirstOffset,
		MaxWait: 100 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond,
	})
	defer r.Close()
	gotAt := map[string]string{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(gotAt) < n {
		m, err := r.FetchMessage(ctx)
		require.NoError(t, err)
		require.NotContains(t, gotAt, string(m.Value))
		gotAt[string(m.Value)] = fmt.Sprintf("%d/%d", m.Partition, m.Offset)
		i := 0
		_, _ = fmt.Sscanf(string(m.Value), "n-%03d", &i)
		require.Equal(t, fmt.Sprintf("key-%d", i%3), string(m.Key))
		var headers []string
		for _, h := range m.Headers {
			headers = append(headers, h.Key+"="+string(h.Value))
		}
		sort.Strings(headers)
		require.Contains(t, headers, "color=red")
		require.NoError(t, r.CommitMessages(ctx, m))
	}
	require.Equal(t, sentAt, gotAt, "each message at the partition and offset its send answered")
	require.NoError(t, r.Close())
	requireCommittedToEnd(t, srv.KafkaAddr, "kafkago-natives", q.GetDisplayName())
}
