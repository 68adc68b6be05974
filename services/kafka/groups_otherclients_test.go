package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	segkafka "github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
)

// TestSegmentioKafkaGoConsumerGroupResumes runs segmentio/kafka-go's
// group reader, which speaks the old group versions (JoinGroup v1 or v2
// and no MEMBER_ID_REQUIRED, SyncGroup, Heartbeat and LeaveGroup v0,
// OffsetCommit v2, OffsetFetch v1): it reads and commits, and a second
// reader of the group starts where the first stopped.
func TestSegmentioKafkaGoConsumerGroupResumes(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "kg", 1)
	produceAll(t, newClient(t, srv.KafkaAddr), records("kg", 30, "a")...)
	ctx := ctxT(t)
	read := func(n int) []string {
		r := segkafka.NewReader(segkafka.ReaderConfig{Brokers: []string{srv.KafkaAddr}, GroupID: "kg-readers", Topic: "kg",
			MaxWait: 100 * time.Millisecond, StartOffset: segkafka.FirstOffset, HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second})
		defer r.Close()
		var got []string
		for range n {
			m, err := r.ReadMessage(ctx) // commits synchronously
			require.NoError(t, err)
			got = append(got, string(m.Value))
		}
		return got
	}
	got := read(20)
	require.Equal(t, "a-0", got[0])
	require.Equal(t, "a-19", got[19])
	got = read(10)
	require.Equal(t, "a-20", got[0], "the second reader resumes at the committed offset")
}

// saramaHandler records what a Sarama group member consumes and marks it
// (committed by Sarama's auto-commit and on close).
type saramaHandler struct {
	mu   *sync.Mutex
	seen map[string]int
}

func (saramaHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for m := range claim.Messages() {
		h.mu.Lock()
		h.seen[string(m.Value)]++
		h.mu.Unlock()
		sess.MarkMessage(m, "")
	}
	return nil
}

// TestSaramaConsumerGroupOfTwo runs two Sarama group members (Kafka 2.8
// versions, range assignor): between them they consume everything, and on
// close their commits cover every record.
func TestSaramaConsumerGroupOfTwo(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "sg", 4)
	produceAll(t, newClient(t, srv.KafkaAddr), records("sg", 100, "a")...)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond
	cfg.Consumer.Group.Rebalance.Retry.Backoff = 100 * time.Millisecond
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	var mu sync.Mutex
	seen := map[string]int{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var groups []sarama.ConsumerGroup
	for range 2 {
		g, err := sarama.NewConsumerGroup([]string{srv.KafkaAddr}, "sarama-readers", cfg)
		require.NoError(t, err)
		groups = append(groups, g)
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := g.Consume(ctx, []string{"sg"}, saramaHandler{mu: &mu, seen: seen}); err != nil && ctx.Err() == nil {
					t.Logf("consume: %v", err)
					time.Sleep(100 * time.Millisecond)
				}
			}
		})
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 100
	}, time.Minute, 20*time.Millisecond)
	cancel()
	wg.Wait()
	for _, g := range groups {
		require.NoError(t, g.Close())
	}
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	offsets, err := adm.FetchOffsets(context.Background(), "sarama-readers")
	require.NoError(t, err)
	var total int64
	offsets.Each(func(o kadm.OffsetResponse) { total += o.At })
	require.Equal(t, int64(100), total, fmt.Sprint(offsets))
}
