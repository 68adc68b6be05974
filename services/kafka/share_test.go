package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
)

// TestShareGroupConsumersShareTheMessages runs two franz-go share
// consumers (KIP-932) of one share group over a topic of two partitions:
// between them they get every record once (each accepted when polled
// again). The share group is the DMS consumer group of the same name, so a
// DMS consumer of it afterwards finds nothing left, and what it is sent
// through the native API reaches the share consumers.
func TestShareGroupConsumersShareTheMessages(t *testing.T) {
	srv := startServer(t)
	createTopic(t, srv, "jobs", 2)
	produceAll(t, newClient(t, srv.KafkaAddr), records("jobs", 200, "a")...)

	var mu sync.Mutex
	seen := map[string]int{}
	count := func(prefix string) (distinct, total int) {
		mu.Lock()
		defer mu.Unlock()
		for v, n := range seen {
			if len(v) > len(prefix) && v[:len(prefix)] == prefix {
				distinct++
				total += n
			}
		}
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	perConsumer := make([]int, 2)
	for i := range 2 {
		cl := newClient(t, srv.KafkaAddr, kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"), kgo.ShareMaxRecords(20))
		wg.Go(func() {
			for ctx.Err() == nil {
				fs := cl.PollFetches(ctx)
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[string(r.Value)]++
					perConsumer[i]++
					mu.Unlock()
				})
			}
		})
	}
	require.Eventually(t, func() bool { d, _ := count("a-"); return d == 200 }, time.Minute, 20*time.Millisecond)

	// Sent through the DMS API, read by the share consumers.
	q, err := srv.Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: "projects/" + defaultProject + "/queues/jobs"})
	require.NoError(t, err)
	for i := range 10 {
		srv.Send(t, q.GetQueue(), fmt.Sprintf("native-%d", i))
	}
	require.Eventually(t, func() bool { d, _ := count("native-"); return d == 10 }, time.Minute, 20*time.Millisecond)
	cancel()
	wg.Wait()
	_, total := count("a-")
	require.Equal(t, 200, total, "a record was delivered twice")
	t.Logf("records per consumer: %v", perConsumer)

	// The DMS group behind the share group: every record accepted.
	g := &dmsv1.ConsumerGroup{Name: "projects/" + defaultProject + "/queues/jobs/groups/workers"}
	require.Empty(t, srv.Receive(t, g, 10, 30*time.Second))
}

// TestShareGroupReleasedRecordsComeBack releases records: they are
// delivered again with a higher delivery count.
func TestShareGroupReleasedRecordsComeBack(t *testing.T) {
	srv := startServer(t)
	createTopic(t, srv, "jobs", 1)
	produceAll(t, newClient(t, srv.KafkaAddr), records("jobs", 5, "a")...)
	cl := newClient(t, srv.KafkaAddr, kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	released := map[string]bool{}
	for len(released) < 5 {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err())
		fs.EachRecord(func(r *kgo.Record) {
			r.Ack(kgo.AckRelease)
			released[string(r.Value)] = true
		})
	}
	again := map[string]int32{}
	for len(again) < 5 {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err())
		fs.EachRecord(func(r *kgo.Record) {
			again[string(r.Value)] = r.DeliveryCount()
		})
	}
	for v, dc := range again {
		require.GreaterOrEqual(t, dc, int32(2), "%s delivered again with its count", v)
	}
}

// shareFetchRaw opens a share session on a connection of its own and
// fetches from one partition until it gets records; it returns the
// connection and the acquired records.
func shareFetchRaw(t *testing.T, addr string, topicID [16]byte, member string) (*rawClient, []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord) {
	c := dialRaw(t, addr)
	group := "workers"
	for epoch := int32(0); ; epoch++ {
		req := kmsg.NewPtrShareFetchRequest()
		req.Version, req.GroupID, req.MemberID, req.ShareSessionEpoch = 1, &group, &member, epoch
		req.MaxWaitMillis, req.MaxRecords, req.BatchSize = 500, 100, 100
		tp := kmsg.NewShareFetchRequestTopicPartition()
		tp.Partition = 0
		req.Topics = []kmsg.ShareFetchRequestTopic{{TopicID: topicID, Partitions: []kmsg.ShareFetchRequestTopicPartition{tp}}}
		resp := c.roundTrip(req).(*kmsg.ShareFetchResponse)
		require.Zero(t, resp.ErrorCode)
		require.EqualValues(t, 30000, resp.AcquisitionLockTimeoutMillis)
		for _, rt := range resp.Topics {
			for _, rp := range rt.Partitions {
				require.Zero(t, rp.ErrorCode)
				if len(rp.AcquiredRecords) > 0 {
					require.NotEmpty(t, rp.Records)
					return c, rp.AcquiredRecords
				}
			}
		}
		require.Less(t, epoch, int32(100), "no records acquired")
	}
}

// TestShareSessionEndsWithItsConnection acquires records on a raw
// connection and closes it: the records are released at once (not after
// their 30 s lock) and another session acquires them, delivered a second
// time. A wrong session epoch is refused.
func TestShareSessionEndsWithItsConnection(t *testing.T) {
	srv := startServer(t)
	createTopic(t, srv, "jobs", 1)
	produceAll(t, newClient(t, srv.KafkaAddr), records("jobs", 5, "a")...)
	md := dialRaw(t, srv.KafkaAddr).roundTrip(&kmsg.MetadataRequest{Version: 12, Topics: []kmsg.MetadataRequestTopic{{Topic: kmsg.StringPtr("jobs")}}}).(*kmsg.MetadataResponse)
	topicID := md.Topics[0].TopicID

	c, acquired := shareFetchRaw(t, srv.KafkaAddr, topicID, "m1")
	require.Equal(t, []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord{{FirstOffset: 0, LastOffset: 4, DeliveryCount: 1}}, acquired)

	bad := kmsg.NewPtrShareAcknowledgeRequest()
	bad.Version, bad.GroupID, bad.MemberID, bad.ShareSessionEpoch = 1, kmsg.StringPtr("workers"), kmsg.StringPtr("m1"), 7
	require.Equal(t, kerr.InvalidShareSessionEpoch.Code, c.roundTrip(bad).(*kmsg.ShareAcknowledgeResponse).ErrorCode)
	bad.MemberID = kmsg.StringPtr("nobody")
	require.Equal(t, kerr.ShareSessionNotFound.Code, c.roundTrip(bad).(*kmsg.ShareAcknowledgeResponse).ErrorCode)

	require.NoError(t, c.conn.Close())
	c, acquired = shareFetchRaw(t, srv.KafkaAddr, topicID, "m2")
	require.Equal(t, []kmsg.ShareFetchResponseTopicPartitionAcquiredRecord{{FirstOffset: 0, LastOffset: 4, DeliveryCount: 2}}, acquired)

	// Accepting them and closing the session (epoch -1) settles them;
	// offset 5 was never held.
	ack := kmsg.NewPtrShareAcknowledgeRequest()
	ack.Version, ack.GroupID, ack.MemberID, ack.ShareSessionEpoch = 1, kmsg.StringPtr("workers"), kmsg.StringPtr("m2"), -1
	tp := kmsg.NewShareAcknowledgeRequestTopicPartition()
	tp.AcknowledgementBatches = []kmsg.ShareAcknowledgeRequestTopicPartitionAcknowledgementBatch{{FirstOffset: 0, LastOffset: 4, AcknowledgeTypes: []int8{1}}}
	ack.Topics = []kmsg.ShareAcknowledgeRequestTopic{{TopicID: topicID, Partitions: []kmsg.ShareAcknowledgeRequestTopicPartition{tp}}}
	ar := c.roundTrip(ack).(*kmsg.ShareAcknowledgeResponse)
	require.Zero(t, ar.ErrorCode)
	require.Zero(t, ar.Topics[0].Partitions[0].ErrorCode)
	ack.MemberID, ack.ShareSessionEpoch = kmsg.StringPtr("m2"), 1
	require.Equal(t, kerr.ShareSessionNotFound.Code, c.roundTrip(ack).(*kmsg.ShareAcknowledgeResponse).ErrorCode, "the session is closed")
	g := &dmsv1.ConsumerGroup{Name: "projects/" + defaultProject + "/queues/jobs/groups/workers"}
	require.Empty(t, srv.Receive(t, g, 10, 30*time.Second), "accepted records are settled")
}

// TestShareGroupsAreListed lists groups with kadm while a share consumer
// runs: the share group is there, of type share.
func TestShareGroupsAreListed(t *testing.T) {
	srv := startServer(t)
	createTopic(t, srv, "jobs", 1)
	produceAll(t, newClient(t, srv.KafkaAddr), records("jobs", 1, "a")...)
	cl := newClient(t, srv.KafkaAddr, kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for len(cl.PollFetches(ctx).Records()) == 0 {
		require.NoError(t, ctx.Err())
	}
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	listed, err := adm.ListGroups(context.Background())
	require.NoError(t, err)
	g, ok := listed["workers"]
	require.True(t, ok, "%v", listed)
	require.Equal(t, "share", g.GroupType)
	require.Equal(t, "Stable", g.State)
	stable, err := adm.ListGroups(context.Background(), "Stable")
	require.NoError(t, err)
	require.Contains(t, stable.Groups(), "workers")
}

// TestShareGroupDescribe describes a share group with kadm while two
// share consumers run: both members, each assigned every partition.
func TestShareGroupDescribe(t *testing.T) {
	srv := startServer(t)
	createTopic(t, srv, "jobs", 2)
	produceAll(t, newClient(t, srv.KafkaAddr), records("jobs", 4, "a")...)
	for range 2 {
		cl := newClient(t, srv.KafkaAddr, kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"), kgo.ClientID("sharer"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		cl.PollFetches(ctx) // joins
		cancel()
	}
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	var d kadm.DescribedShareGroup
	require.Eventually(t, func() bool {
		described, err := adm.DescribeShareGroups(context.Background(), "workers")
		if err != nil {
			return false
		}
		d = described["workers"]
		return d.Err == nil && len(d.Members) == 2
	}, time.Minute, 50*time.Millisecond)
	require.Equal(t, "Stable", d.GroupState)
	for _, m := range d.Members {
		require.Equal(t, "sharer", m.ClientID)
		require.Equal(t, []string{"jobs"}, m.SubscribedTopicNames)
		require.Len(t, m.Assignment["jobs"], 2, "every partition")
	}
	described, err := adm.DescribeShareGroups(context.Background(), "nope")
	require.NoError(t, err)
	require.ErrorIs(t, described["nope"].Err, kerr.GroupIDNotFound)
}
