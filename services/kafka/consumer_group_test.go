package kafka_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// groupConsumer is a franz-go consumer group member that commits what it
// polled, synchronously, after each poll.
type groupConsumer struct {
	cl   *kgo.Client
	done chan struct{}
}

// seen counts the values consumed, by value.
type seen struct {
	mu     sync.Mutex
	values map[string]int
}

func (s *seen) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.values[v]++
}

// count returns how many distinct values with a prefix were consumed.
func (s *seen) count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for v := range s.values {
		if strings.HasPrefix(v, prefix) {
			n++
		}
	}
	return n
}

func startConsumer(t *testing.T, addr, group, topic string, into *seen) *groupConsumer {
	cl := newClient(t, addr, kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.Balancers(kgo.CooperativeStickyBalancer()))
	c := &groupConsumer{cl: cl, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			fs.EachRecord(func(r *kgo.Record) { into.add(string(r.Value)) })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_ = cl.CommitUncommittedOffsets(ctx)
			cancel()
		}
	}()
	return c
}

// stop leaves the group (franz-go sends LeaveGroup on close).
func (c *groupConsumer) stop() {
	c.cl.Close()
	<-c.done
}

// TestConsumerGroupOfThreeConsumesAcrossRebalanceAndRestart runs three
// franz-go group consumers (cooperative-sticky) over a topic of six
// partitions: everything produced is consumed; one leaves and the others
// consume what comes next; after a restart of dmsd a new member of the
// group resumes at the committed offsets, reading nothing consumed before.
func TestConsumerGroupOfThreeConsumesAcrossRebalanceAndRestart(t *testing.T) {
	srv := startServer(t, groupFlags...)
	createTopic(t, srv, "events", 6)
	producer := newClient(t, srv.KafkaAddr)
	produceAll(t, producer, records("events", 300, "a")...)

	got := &seen{values: map[string]int{}}
	var consumers []*groupConsumer
	for range 3 {
		consumers = append(consumers, startConsumer(t, srv.KafkaAddr, "readers", "events", got))
	}
	require.Eventually(t, func() bool { return got.count("a-") == 300 }, time.Minute, 20*time.Millisecond)

	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	ctx := context.Background()
	require.Eventually(t, func() bool {
		d, err := adm.DescribeGroups(ctx, "readers")
		if err != nil || d["readers"].State != "Stable" || len(d["readers"].Members) != 3 {
			return false
		}
		for _, m := range d["readers"].Members {
			a, ok := m.Assigned.AsConsumer()
			if !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 2 {
				return false
			}
		}
		return true
	}, time.Minute, 20*time.Millisecond, "three members never shared the six partitions")

	consumers[2].stop()
	consumers = consumers[:2]
	produceAll(t, producer, records("events", 300, "b")...)
	require.Eventually(t, func() bool { return got.count("b-") == 300 }, time.Minute, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		d, err := adm.DescribeGroups(ctx, "readers")
		return err == nil && d["readers"].State == "Stable" && len(d["readers"].Members) == 2
	}, time.Minute, 20*time.Millisecond)
	for _, c := range consumers {
		c.stop()
	}
	before, err := adm.FetchOffsets(ctx, "readers")
	require.NoError(t, err)
	var total int64
	before.Each(func(o kadm.OffsetResponse) { total += o.At })
	require.Equal(t, int64(600), total, "every record consumed is committed")

	srv.Restart(t)
	adm = kadm.NewClient(newClient(t, srv.KafkaAddr))
	after, err := adm.FetchOffsets(ctx, "readers")
	require.NoError(t, err)
	require.Equal(t, before.Offsets(), after.Offsets())
	produceAll(t, newClient(t, srv.KafkaAddr), records("events", 100, "c")...)
	again := &seen{values: map[string]int{}}
	c := startConsumer(t, srv.KafkaAddr, "readers", "events", again)
	defer c.stop()
	require.Eventually(t, func() bool { return again.count("c-") == 100 }, time.Minute, 20*time.Millisecond)
	require.Zero(t, again.count("a-")+again.count("b-"), "a record consumed and committed before the restart came again")
}
