package kafka_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/kafka/groups"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/testserver"
)

// startKafkaCluster runs three nodes with every role on one etcd,
// replicating everything three times, and waits until the delivery shards
// have owners.
func startKafkaCluster(t *testing.T) []*testserver.Server {
	t.Helper()
	etcd := testserver.StartEtcd(t)
	var nodes []*testserver.Server
	for i := range 3 {
		nodes = append(nodes, testserver.Start(t, testserver.WithFlags(append([]string{"-etcd.endpoints", etcd, "-node.name", fmt.Sprintf("node%d", i+1),
			"-storage.replication-factor", "3", "-node.session-ttl", "3s", "-storage.replica-lag-time", "2s"}, groupFlags...)...)))
	}
	require.Eventually(t, func() bool {
		resp, err := metadatav1.NewMetadataServiceClient(nodes[0].Internal).DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
		require.NoError(t, err)
		placed := 0
		for _, u := range resp.GetUnits() {
			if u.GetUnit().GetKind() == storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD && len(u.GetIsr()) == 3 && u.GetOwner() != "" {
				placed++
			}
		}
		return placed == int(resp.GetCluster().GetDeliveryShards())
	}, 30*time.Second, 50*time.Millisecond, "delivery shards placed on every node")
	return nodes
}

// groupOwner returns the node owning a group's delivery shard, and its
// owner epoch, as node via sees it.
func groupOwner(t *testing.T, via *testserver.Server, group string) (string, int64) {
	t.Helper()
	resp, err := metadatav1.NewMetadataServiceClient(via.Internal).DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
	require.NoError(t, err)
	shard := placement.ShardOf(groups.Key(defaultProject, group), resp.GetCluster().GetDeliveryShards())
	for _, u := range resp.GetUnits() {
		if u.GetUnit().GetKind() == storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD && u.GetUnit().GetShard() == shard {
			return u.GetOwner(), u.GetOwnerEpoch()
		}
	}
	return "", 0
}

// TestGroupCoordinatorFailsOverWithItsShard checks the coordinator of a
// group in a cluster of three: FindCoordinator on any node names the owner
// of the group's delivery shard, the other nodes answer the group's
// requests NOT_COORDINATOR, and when the owner stops, the node taking the
// shard over (a newer owner epoch) serves the offsets committed before,
// read from the shard's replicated log.
func TestGroupCoordinatorFailsOverWithItsShard(t *testing.T) {
	nodes := startKafkaCluster(t)
	createTopic(t, nodes[0], "orders", 3)
	owner, epoch := groupOwner(t, nodes[0], "g")
	require.NotEmpty(t, owner)
	ownerAt := slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == owner })
	require.GreaterOrEqual(t, ownerAt, 0)

	for _, n := range nodes {
		c := dialRaw(t, n.KafkaAddr)
		fc := kmsg.NewPtrFindCoordinatorRequest()
		fc.Version, fc.CoordinatorKey = 3, "g"
		r := c.roundTrip(fc).(*kmsg.FindCoordinatorResponse)
		require.Zero(t, r.ErrorCode)
		require.Equal(t, nodes[ownerAt].KafkaAddr, hostPort(r.Host, r.Port), "asked %s", n.NodeName)
		if n.NodeName != owner {
			require.Equal(t, kerr.NotCoordinator.Code, heartbeatCode(c, "g", "m", 1, nil))
			require.Equal(t, kerr.NotCoordinator.Code, commitCode(c, "g", "", -1, "orders", 0, ""))
		}
	}

	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.KafkaAddr)
	}
	adm := kadm.NewClient(newClient(t, addrs[0], kgoSeeds(addrs)...))
	want := map[string]map[int32]int64{"orders": {0: 11, 1: 22, 2: 33}}
	commit(t, adm, "g", want)
	require.Equal(t, want, fetched(t, adm, "g"))

	nodes[ownerAt].Server.Stop()
	survivor := nodes[(ownerAt+1)%3]
	require.Eventually(t, func() bool {
		o, e := groupOwner(t, survivor, "g")
		return o != "" && o != owner && e > epoch
	}, 30*time.Second, 20*time.Millisecond, "the group's shard fails over")
	var survivors []string
	for i, n := range nodes {
		if i != ownerAt {
			survivors = append(survivors, n.KafkaAddr)
		}
	}
	adm = kadm.NewClient(newClient(t, survivors[0], kgoSeeds(survivors)...))
	require.Eventually(t, func() bool {
		resps, err := adm.FetchOffsets(context.Background(), "g")
		return err == nil && resps.Error() == nil
	}, 30*time.Second, 50*time.Millisecond)
	require.Equal(t, want, fetched(t, adm, "g"))
	commit(t, adm, "g", map[string]map[int32]int64{"orders": {0: 12}})
	want["orders"][0] = 12
	require.Equal(t, want, fetched(t, adm, "g"))
}

// kgoSeeds seeds a client with every address (the last SeedBrokers wins).
func kgoSeeds(addrs []string) []kgo.Opt { return []kgo.Opt{kgo.SeedBrokers(addrs...)} }

// TestShareGroupInACluster runs a franz-go share consumer against a
// cluster of three, where it fetches each partition from its leader: each
// node hands out only the messages of the partitions it is asked for, so
// every record comes once, at its first delivery.
func TestShareGroupInACluster(t *testing.T) {
	nodes := startKafkaCluster(t)
	createTopic(t, nodes[0], "jobs", 6)
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.KafkaAddr)
	}
	leaders := map[string]bool{}
	resp, err := metadatav1.NewMetadataServiceClient(nodes[0].Internal).DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
	require.NoError(t, err)
	for _, u := range resp.GetUnits() {
		if u.GetUnit().GetKind() == storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION {
			leaders[u.GetLeader()] = true
		}
	}
	t.Logf("partitions led by %d nodes", len(leaders))
	produceAll(t, newClient(t, addrs[0], kgoSeeds(addrs)...), records("jobs", 150, "a")...)

	cl := newClient(t, addrs[0], append(kgoSeeds(addrs), kgo.ShareGroup("workers"), kgo.ConsumeTopics("jobs"))...)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seen := map[string]int32{}
	for len(seen) < 150 {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "%d of 150 records", len(seen))
		fs.EachRecord(func(r *kgo.Record) {
			_, dup := seen[string(r.Value)]
			require.False(t, dup, "record %s delivered twice", r.Value)
			seen[string(r.Value)] = r.DeliveryCount()
		})
	}
	for v, dc := range seen {
		require.Equal(t, int32(1), dc, "record %s bounced between nodes before its delivery", v)
	}
}

// TestConsumerGroupKeepsConsumingThroughACoordinatorFailover runs two
// franz-go group members on a cluster of three and stops the node
// coordinating their group: they find the new coordinator, keep their
// committed offsets and consume what is produced afterwards; at the end
// the commits cover every record.
func TestConsumerGroupKeepsConsumingThroughACoordinatorFailover(t *testing.T) {
	nodes := startKafkaCluster(t)
	createTopic(t, nodes[0], "events", 4)
	owner, _ := groupOwner(t, nodes[0], "readers")
	ownerAt := slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == owner })
	require.GreaterOrEqual(t, ownerAt, 0)
	var survivors []string
	for i, n := range nodes {
		if i != ownerAt {
			survivors = append(survivors, n.KafkaAddr)
		}
	}
	all := append([]string{nodes[ownerAt].KafkaAddr}, survivors...)
	produceAll(t, newClient(t, survivors[0], kgoSeeds(survivors)...), records("events", 200, "a")...)

	got := &seen{values: map[string]int{}}
	var consumers []*groupConsumer
	for range 2 {
		cl := newClient(t, all[0], append(kgoSeeds(all), kgo.ConsumerGroup("readers"), kgo.ConsumeTopics("events"), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
		c := &groupConsumer{cl: cl, done: make(chan struct{})}
		go func() {
			defer close(c.done)
			for {
				fs := cl.PollFetches(context.Background())
				if fs.IsClientClosed() {
					return
				}
				fs.EachRecord(func(r *kgo.Record) { got.add(string(r.Value)) })
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_ = cl.CommitUncommittedOffsets(ctx)
				cancel()
			}
		}()
		consumers = append(consumers, c)
	}
	require.Eventually(t, func() bool { return got.count("a-") == 200 }, time.Minute, 20*time.Millisecond)

	nodes[ownerAt].Server.Stop()
	produceAll(t, newClient(t, survivors[0], kgoSeeds(survivors)...), records("events", 200, "b")...)
	require.Eventually(t, func() bool { return got.count("b-") == 200 }, 2*time.Minute, 50*time.Millisecond,
		"the members did not consume past the coordinator's failover")
	adm := kadm.NewClient(newClient(t, survivors[0], kgoSeeds(survivors)...))
	require.Eventually(t, func() bool {
		offsets, err := adm.FetchOffsets(context.Background(), "readers")
		if err != nil || offsets.Error() != nil {
			return false
		}
		var total int64
		offsets.Each(func(o kadm.OffsetResponse) { total += o.At })
		return total == 400
	}, time.Minute, 50*time.Millisecond, "the commits do not cover every record")
	for _, c := range consumers {
		c.stop()
	}
}
