package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/testserver"
)

// partitionLeader returns the leader and leader epoch of a queue's
// partition 0, as node via's placement has them; "" while it cannot tell
// (the metadata role is failing over).
func partitionLeader(via *testserver.Server, queueID string) (string, int64) {
	resp, err := metadatav1.NewMetadataServiceClient(via.Internal).DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
	if err != nil {
		return "", 0
	}
	want := placement.UnitKey(placement.PartitionUnit(queueID, 0))
	for _, u := range resp.GetUnits() {
		if placement.UnitKey(u.GetUnit()) == want {
			return u.GetLeader(), u.GetLeaderEpoch()
		}
	}
	return "", 0
}

// TestClientsFollowAPartitionLeaderChange produces to a KAFKA_HA topic
// replicated on three nodes with an idempotent franz-go producer, stops the
// partition's leader, produces again, and reads everything back from a
// survivor: every acknowledged record once, in order, the clients having
// followed the new leader; the old leader epoch is fenced.
func TestClientsFollowAPartitionLeaderChange(t *testing.T) {
	nodes := startKafkaCluster(t)
	topic := "ha"
	createTopic(t, nodes[0], topic, 1)
	var seeds []string
	for _, n := range nodes {
		seeds = append(seeds, n.KafkaAddr)
	}
	cl := newClient(t, seeds[0], kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produce := func(prefix string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		require.NoError(t, cl.ProduceSync(ctx, records(topic, 50, prefix)...).FirstErr())
	}
	produce("before")

	queueID := queueNamed(t, nodes[0].Queues(), topic).GetId()
	leader, epoch := partitionLeader(nodes[0], queueID)
	at := slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == leader })
	require.GreaterOrEqual(t, at, 0, "leader %q", leader)
	nodes[at].Server.Stop()
	survivor := nodes[(at+1)%3]
	require.Eventually(t, func() bool {
		l, e := partitionLeader(survivor, queueID)
		return l != "" && l != leader && e > epoch
	}, 30*time.Second, 50*time.Millisecond, "a new leader in a newer epoch")

	produce("after")

	c := dialRaw(t, survivor.KafkaAddr)
	req := fetchRequest(topic, 0, 0)
	req.Topics[0].Partitions[0].CurrentLeaderEpoch = int32(epoch)
	require.Equal(t, kerr.FencedLeaderEpoch.Code, c.roundTrip(req).(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode)

	got := consumeN(t, survivor.KafkaAddr, topic, []int32{0}, 100)
	require.Len(t, got, 100)
	for i, r := range got {
		prefix := "before"
		if i >= 50 {
			prefix = "after"
		}
		require.Equal(t, fmt.Sprintf("%s-%d", prefix, i%50), string(r.Value), "offset %d", r.Offset)
		require.Equal(t, int64(i), r.Offset)
	}
}
