package kafkaclients_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"
)

func kafkaGoWrite(t *testing.T, addr, topic, prefix string, n int, codec compress.Compression) {
	t.Helper()
	w := &kafka.Writer{
		Addr: kafka.TCP(addr), Topic: topic, RequiredAcks: kafka.RequireAll, Compression: codec,
		Balancer: &kafka.Hash{}, BatchTimeout: 5 * time.Millisecond, BatchSize: 50, AllowAutoTopicCreation: true,
	}
	defer func() { require.NoError(t, w.Close()) }()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{
			Key: fmt.Appendf(nil, "k%d", i%7), Value: fmt.Appendf(nil, "%s-%03d", prefix, i),
			Headers: []kafka.Header{{Key: "i", Value: fmt.Appendf(nil, "%d", i)}},
		}
	}
	require.NoError(t, w.WriteMessages(ctxT(t), msgs...))
}

// kafkaGoMember reads with a group reader, commits every message
// synchronously and then records it.
func kafkaGoMember(t *testing.T, addr, group, topic string) (func() []string, func()) {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: []string{addr}, GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset,
		MaxWait: 100 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond, SessionTimeout: 6 * time.Second,
		RebalanceTimeout: 5 * time.Second, JoinGroupBackoff: 100 * time.Millisecond,
	})
	var mu sync.Mutex
	var seen []string
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		for {
			m, err := r.FetchMessage(ctx)
			if err != nil {
				done <- err
				return
			}
			if err := r.CommitMessages(ctx, m); err != nil {
				done <- err
				return
			}
			// Seen once committed, so that a stop cannot cancel the
			// commit of a record the test counts as consumed.
			mu.Lock()
			seen = append(seen, string(m.Value))
			mu.Unlock()
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			err := <-done
			require.True(t, errors.Is(err, context.Canceled), "reader: %v", err)
			require.NoError(t, r.Close())
		})
	}
	t.Cleanup(stop)
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), seen...)
	}, stop
}

// TestKafkaGo: segmentio/kafka-go's writer with every codec, two group
// readers committing as they go with the group rebalancing between them,
// and its client creating and deleting topics.
func TestKafkaGo(t *testing.T) {
	srv := startServer(t)
	addr := srv.KafkaAddr
	cl := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 30 * time.Second}

	t.Run("admin", func(t *testing.T) {
		resp, err := cl.CreateTopics(ctxT(t), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: "kafkago-admin", NumPartitions: 2, ReplicationFactor: 1}}})
		require.NoError(t, err)
		require.NoError(t, resp.Errors["kafkago-admin"])
		md, err := cl.Metadata(ctxT(t), &kafka.MetadataRequest{Topics: []string{"kafkago-admin"}})
		require.NoError(t, err)
		require.Len(t, md.Topics, 1)
		require.NoError(t, md.Topics[0].Error)
		require.Len(t, md.Topics[0].Partitions, 2)
		del, err := cl.DeleteTopics(ctxT(t), &kafka.DeleteTopicsRequest{Topics: []string{"kafkago-admin"}})
		require.NoError(t, err)
		require.NoError(t, del.Errors["kafkago-admin"])
	})

	for _, codec := range []compress.Compression{0, kafka.Gzip, kafka.Snappy, kafka.Lz4, kafka.Zstd} {
		name := "none"
		if codec != 0 {
			name = codec.String()
		}
		t.Run("codec "+name, func(t *testing.T) {
			topic := "kafkago-" + name
			const n = 100
			kafkaGoWrite(t, addr, topic, topic, n, codec)
			var got []string
			for _, r := range readAll(t, addr, topic, n) {
				got = append(got, string(r.Value))
			}
			require.Equal(t, expectedValues(topic, n), valueSet(t, got))
		})
	}

	t.Run("consumer group", func(t *testing.T) {
		const topic, group, n = "kafkago-group", "kafkago-members", 200
		resp, err := cl.CreateTopics(ctxT(t), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 3, ReplicationFactor: 1}}})
		require.NoError(t, err)
		require.NoError(t, resp.Errors[topic])
		kafkaGoWrite(t, addr, topic, "first", n, kafka.Zstd)

		a, stopA := kafkaGoMember(t, addr, group, topic)
		require.Eventually(t, func() bool { return len(a()) > 0 }, 30*time.Second, 20*time.Millisecond)
		b, stopB := kafkaGoMember(t, addr, group, topic)
		kafkaGoWrite(t, addr, topic, "second", n, kafka.Gzip)
		want := expectedValues("first", n)
		for v := range expectedValues("second", n) {
			want[v] = true
		}
		require.Eventually(t, func() bool {
			union := map[string]bool{}
			for _, v := range append(a(), b()...) {
				union[v] = true
			}
			return len(union) == len(want)
		}, 60*time.Second, 50*time.Millisecond)
		stopA()
		stopB()
		requireCommittedToEnd(t, addr, group, topic)
	})
}
