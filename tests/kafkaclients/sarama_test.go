package kafkaclients_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/stretchr/testify/require"
)

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.ClientID = "sarama-test"
	// The newest protocol sarama knows, so that it uses the versions a
	// modern client does (Produce v7+, JoinGroup v5+, ...).
	c.Version = sarama.MaxVersion
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1 // sarama's idempotent producer requires it
	c.Producer.Retry.Max = 5
	c.Consumer.Offsets.Initial = sarama.OffsetOldest
	c.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	c.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRoundRobin()}
	c.Metadata.RefreshFrequency = time.Second
	return c
}

func saramaProduce(t *testing.T, addr, topic, prefix string, n int, codec sarama.CompressionCodec) {
	t.Helper()
	c := saramaConfig()
	c.Producer.Compression = codec
	p, err := sarama.NewSyncProducer([]string{addr}, c)
	require.NoError(t, err)
	defer func() { require.NoError(t, p.Close()) }()
	msgs := make([]*sarama.ProducerMessage, n)
	for i := range msgs {
		msgs[i] = &sarama.ProducerMessage{
			Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i%5)),
			Value:   sarama.StringEncoder(fmt.Sprintf("%s-%03d", prefix, i)),
			Headers: []sarama.RecordHeader{{Key: []byte("i"), Value: fmt.Appendf(nil, "%d", i)}},
		}
	}
	require.NoError(t, p.SendMessages(msgs))
	for _, m := range msgs {
		require.GreaterOrEqual(t, m.Offset, int64(0))
	}
}

// saramaMember is one consumer group member that records what it consumed
// and marks every message, so that its auto-commits move the group on.
type saramaMember struct {
	mu       sync.Mutex
	values   []string
	headers  map[string]string
	assigned int // claims over all generations
}

func (m *saramaMember) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (m *saramaMember) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (m *saramaMember) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	m.mu.Lock()
	m.assigned++
	m.mu.Unlock()
	for msg := range claim.Messages() {
		m.mu.Lock()
		m.values = append(m.values, string(msg.Value))
		for _, h := range msg.Headers {
			m.headers[string(msg.Value)] = string(h.Value)
		}
		m.mu.Unlock()
		sess.MarkMessage(msg, "")
	}
	return nil
}

func (m *saramaMember) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.values...)
}

// joinSarama runs a member of group until the returned stop is called,
// which leaves the group after a last commit.
func joinSarama(t *testing.T, addr, group, topic string) (*saramaMember, func()) {
	t.Helper()
	cg, err := sarama.NewConsumerGroup([]string{addr}, group, saramaConfig())
	require.NoError(t, err)
	m := &saramaMember{headers: map[string]string{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			// Consume returns an error while no broker answers (the kill
			// test); the member tries again, as an application would. A
			// lasting error shows as records never consumed.
			if err := cg.Consume(ctx, []string{topic}, m); err != nil && ctx.Err() == nil {
				t.Logf("member of %s: %v", group, err)
				time.Sleep(100 * time.Millisecond)
			}
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			require.NoError(t, cg.Close())
		})
	}
	t.Cleanup(stop)
	return m, stop
}

// TestSarama: sarama's idempotent producer with every codec, a consumer
// group of two members with a rebalance whose commits reach the end of
// every partition, and its cluster admin creating, describing and deleting
// a topic.
func TestSarama(t *testing.T) {
	srv := startServer(t)
	addr := srv.KafkaAddr

	t.Run("admin", func(t *testing.T) {
		ca, err := sarama.NewClusterAdmin([]string{addr}, saramaConfig())
		require.NoError(t, err)
		defer ca.Close()
		require.NoError(t, ca.CreateTopic("sarama-admin", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false))
		err = ca.CreateTopic("sarama-admin", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false)
		require.ErrorIs(t, err, sarama.ErrTopicAlreadyExists)
		md, err := ca.DescribeTopics([]string{"sarama-admin"})
		require.NoError(t, err)
		require.Len(t, md, 1)
		require.Equal(t, sarama.ErrNoError, md[0].Err)
		require.Len(t, md[0].Partitions, 3)
		topics, err := ca.ListTopics()
		require.NoError(t, err)
		require.Contains(t, topics, "sarama-admin")
		require.NoError(t, ca.DeleteTopic("sarama-admin"))
		require.Eventually(t, func() bool {
			topics, err := ca.ListTopics()
			require.NoError(t, err)
			_, ok := topics["sarama-admin"]
			return !ok
		}, 10*time.Second, 50*time.Millisecond)
	})

	for _, codec := range []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD} {
		t.Run("codec "+codec.String(), func(t *testing.T) {
			topic := "sarama-" + codec.String()
			const n = 200
			saramaProduce(t, addr, topic, topic, n, codec)
			recs := readAll(t, addr, topic, n)
			var got []string
			for _, r := range recs {
				got = append(got, string(r.Value))
				require.Len(t, r.Headers, 1)
			}
			require.Equal(t, expectedValues(topic, n), valueSet(t, got))
		})
	}

	// Many sarama users keep its default protocol version (2.8 in 1.61),
	// which asks for older versions of the APIs than MaxVersion does.
	t.Run("default protocol version", func(t *testing.T) {
		const topic, group, n = "sarama-default", "sarama-default-members", 50
		c := sarama.NewConfig()
		c.Producer.Return.Successes = true
		c.Producer.RequiredAcks = sarama.WaitForAll
		c.Consumer.Offsets.Initial = sarama.OffsetOldest
		p, err := sarama.NewSyncProducer([]string{addr}, c)
		require.NoError(t, err)
		for i := range n {
			_, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Value: sarama.StringEncoder(fmt.Sprintf("v-%03d", i))})
			require.NoError(t, err)
		}
		require.NoError(t, p.Close())
		cg, err := sarama.NewConsumerGroup([]string{addr}, group, c)
		require.NoError(t, err)
		m := &saramaMember{headers: map[string]string{}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- cg.Consume(ctx, []string{topic}, m) }()
		require.Eventually(t, func() bool { return len(m.seen()) >= n }, 30*time.Second, 20*time.Millisecond)
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, cg.Close())
		require.Equal(t, expectedValues("v", n), valueSet(t, m.seen()))
		requireCommittedToEnd(t, addr, group, topic)
	})

	t.Run("consumer group", func(t *testing.T) {
		const topic, group, n = "sarama-group", "sarama-members", 300
		ca, err := sarama.NewClusterAdmin([]string{addr}, saramaConfig())
		require.NoError(t, err)
		defer ca.Close()
		require.NoError(t, ca.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false))
		saramaProduce(t, addr, topic, "first", n, sarama.CompressionNone)

		a, stopA := joinSarama(t, addr, group, topic)
		require.Eventually(t, func() bool { return len(a.seen()) > 0 }, 30*time.Second, 20*time.Millisecond)
		// A second member joins: the group rebalances and both consume.
		b, stopB := joinSarama(t, addr, group, topic)
		saramaProduce(t, addr, topic, "second", n, sarama.CompressionSnappy)
		want := expectedValues("first", n)
		for v := range expectedValues("second", n) {
			want[v] = true
		}
		require.Eventually(t, func() bool {
			union := map[string]bool{}
			for _, v := range append(a.seen(), b.seen()...) {
				union[v] = true
			}
			return len(union) == len(want)
		}, 60*time.Second, 50*time.Millisecond)
		require.Eventually(t, func() bool {
			b.mu.Lock()
			defer b.mu.Unlock()
			return b.assigned > 0
		}, 30*time.Second, 20*time.Millisecond, "the second member got partitions")
		stopA()
		stopB()
		requireCommittedToEnd(t, addr, group, topic, "the members' commits reach the end of every partition")

		// A new member of the group starts at the commits: nothing left.
		saramaProduce(t, addr, topic, "third", 10, sarama.CompressionLZ4)
		c, _ := joinSarama(t, addr, group, topic)
		require.Eventually(t, func() bool { return len(c.seen()) >= 10 }, 30*time.Second, 20*time.Millisecond)
		require.Equal(t, expectedValues("third", 10), valueSet(t, c.seen()))
	})
}
