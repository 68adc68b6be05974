package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

// startCluster runs n nodes with every role on an etcd of the test's own,
// replicating everything n times.
func startCluster(t *testing.T, n int, extra ...string) (string, []*testserver.Server) {
	t.Helper()
	etcd := testserver.StartEtcd(t)
	var nodes []*testserver.Server
	for i := range n {
		args := append([]string{"-etcd.endpoints", etcd, "-node.name", fmt.Sprintf("node%d", i+1),
			"-storage.replication-factor", fmt.Sprint(n), "-node.session-ttl", "3s", "-storage.replica-lag-time", "2s"}, extra...)
		nodes = append(nodes, testserver.Start(t, testserver.WithFlags(args...)))
	}
	// The shards are placed once every node is registered.
	admin := metadatav1.NewMetadataServiceClient(nodes[0].Internal)
	require.Eventually(t, func() bool {
		resp, err := admin.DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
		require.NoError(t, err)
		placed := 0
		for _, u := range resp.GetUnits() {
			if u.GetUnit().GetKind() != storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION && len(u.GetIsr()) == n && u.GetOwner() != "" {
				placed++
			}
		}
		return placed == int(resp.GetCluster().GetDeliveryShards()+resp.GetCluster().GetSchedulerShards())
	}, 30*time.Second, 50*time.Millisecond, "shards placed on every node")
	return etcd, nodes
}

func placementOf(t *testing.T, s *testserver.Server, queueID string) []*metadatav1.PartitionState {
	t.Helper()
	resp, err := metadatav1.NewMetadataServiceClient(s.Internal).DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{QueueId: queueID})
	require.NoError(t, err)
	return resp.GetUnits()
}

// receiveAll receives and acknowledges through node s until want bodies
// came, and returns them.
func receiveAll(t *testing.T, s *testserver.Server, g *dmsv1.ConsumerGroup, want int) []string {
	t.Helper()
	var got []string
	require.Eventually(t, func() bool {
		resp, err := s.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 100, WaitTime: durationpb.New(500 * time.Millisecond)})
		if err != nil {
			t.Logf("receive: %v", err)
			return false
		}
		if len(resp.GetMessages()) > 0 {
			for _, r := range s.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, resp.GetMessages()...) {
				require.True(t, r.GetApplied(), r.GetErrorMessage())
			}
			got = append(got, testserver.Bodies(resp.GetMessages())...)
		}
		return len(got) >= want
	}, 60*time.Second, 10*time.Millisecond, "received %d of %d", len(got), want)
	return got
}

// Three nodes replicate every partition three times; any node takes sends
// and receives (forwarded to the owner of the group); when the leader of
// the partitions goes away its partitions fail over to an in-sync replica
// without losing an acknowledged message, and it catches up when it comes
// back.
func TestThreeNodesReplicateAndFailOver(t *testing.T) {
	_, nodes := startCluster(t, 3)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "replicated", PartitionCount: 2})
	require.EqualValues(t, 3, q.GetReplicationFactor())
	g := nodes[0].CreateGroup(t, q, "g")
	units := placementOf(t, nodes[0], q.GetId())
	require.Len(t, units, 2)
	for _, u := range units {
		require.Len(t, u.GetReplicas(), 3)
		require.Len(t, u.GetIsr(), 3)
		require.EqualValues(t, 2, u.GetMinInsync())
	}

	var sent []string
	send := func(via *testserver.Server, n int) {
		for range n {
			body := fmt.Sprint(len(sent))
			via.Send(t, q, body)
			sent = append(sent, body)
		}
	}
	send(nodes[1], 50)
	got := receiveAll(t, nodes[2], g, 50)
	require.ElementsMatch(t, sent, got)

	// Stop the leader of partition 0.
	leader := units[0].GetLeader()
	victim := slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == leader })
	require.GreaterOrEqual(t, victim, 0)
	survivor := nodes[(victim+1)%3]
	nodes[victim].Server.Stop()
	require.Eventually(t, func() bool {
		for _, u := range placementOf(t, survivor, q.GetId()) {
			if u.GetLeader() == leader || u.GetLeader() == "" {
				return false
			}
		}
		return true
	}, 20*time.Second, 20*time.Millisecond, "partitions fail over")
	for _, u := range placementOf(t, survivor, q.GetId()) {
		require.NotContains(t, u.GetIsr(), leader)
	}
	require.Greater(t, placementOf(t, survivor, q.GetId())[0].GetLeaderEpoch(), int64(1), "partition 0 has a new leader epoch")
	before := len(sent)
	send(survivor, 50)
	got = receiveAll(t, nodes[(victim+2)%3], g, len(sent)-before)
	require.ElementsMatch(t, sent[before:], got)

	// The node comes back, catches up and is in sync again.
	nodes[victim].Restart(t)
	require.Eventually(t, func() bool {
		for _, u := range placementOf(t, survivor, q.GetId()) {
			if len(u.GetIsr()) != 3 {
				return false
			}
		}
		return true
	}, 30*time.Second, 50*time.Millisecond, "the restarted node rejoins the in-sync replicas")
}

// Sends keep being acknowledged while the leader of their partition is
// stopped under them, and every acknowledged message is delivered.
func TestAcknowledgedSendsSurviveALeaderStop(t *testing.T) {
	_, nodes := startCluster(t, 3)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "busy", PartitionCount: 1})
	g := nodes[0].CreateGroup(t, q, "g")
	leader := placementOf(t, nodes[0], q.GetId())[0].GetLeader()
	var others []*testserver.Server
	var victim *testserver.Server
	for _, s := range nodes {
		if s.NodeName == leader {
			victim = s
		} else {
			others = append(others, s)
		}
	}
	var (
		mu    sync.Mutex
		acked []string
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w, via := range others {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				body := fmt.Sprintf("%d-%d", w, i)
				sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := via.Producer().SendMessages(sctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte(body)}}})
				scancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, body)
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	victim.Server.Stop()
	time.Sleep(2 * time.Second)
	cancel()
	wg.Wait()
	mu.Lock()
	want := slices.Clone(acked)
	mu.Unlock()
	require.NotEmpty(t, want)
	got := receiveAll(t, others[0], g, len(want))
	for _, body := range want {
		require.Contains(t, got, body, "an acknowledged message was lost")
	}
}

// When every in-sync replica of a unit is gone, nothing elects a leader by
// itself; an admin's unclean election of a replica that was not in sync
// brings the unit back and says what may be lost, and the old leader, when
// it returns, follows the new one.
func TestUncleanElectionIsExplicit(t *testing.T) {
	_, nodes := startCluster(t, 2)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "unclean", PartitionCount: 1})
	g := nodes[0].CreateGroup(t, q, "g")
	u := placementOf(t, nodes[0], q.GetId())[0]
	byName := map[string]*testserver.Server{nodes[0].NodeName: nodes[0], nodes[1].NodeName: nodes[1]}
	leader, follower := byName[u.GetLeader()], byName[u.GetReplicas()[1]]
	leader.Send(t, q, "before")

	// The follower goes; the leader is then the only in-sync replica, and
	// goes too.
	follower.Server.Stop()
	require.Eventually(t, func() bool {
		st := placementOf(t, leader, q.GetId())[0]
		return len(st.GetIsr()) == 1 && st.GetIsr()[0] == leader.NodeName
	}, 20*time.Second, 20*time.Millisecond)
	leader.Server.Stop()
	follower.Restart(t)
	time.Sleep(time.Second) // the controller would have acted by now, if it acted by itself
	st := placementOf(t, follower, q.GetId())[0]
	require.Equal(t, "", st.GetLeader(), "no clean choice, no automatic unclean one")

	admin := metadatav1.NewMetadataServiceClient(follower.Internal)
	_, err := admin.ElectLeader(context.Background(), &metadatav1.ElectLeaderRequest{Unit: st.GetUnit()})
	require.Error(t, err, "a clean election has nobody to elect")
	resp, err := admin.ElectLeader(context.Background(), &metadatav1.ElectLeaderRequest{Unit: st.GetUnit(), Node: follower.NodeName, Unclean: true})
	require.NoError(t, err)
	require.Equal(t, follower.NodeName, resp.GetState().GetLeader())
	require.Contains(t, resp.GetDiscarded(), leader.NodeName)
	// The shards that lost their last in-sync replica with it are offline
	// too; the admin brings each back the same way.
	all, err := admin.DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
	require.NoError(t, err)
	for _, u := range all.GetUnits() {
		if u.GetLeader() == "" {
			_, err := admin.ElectLeader(context.Background(), &metadatav1.ElectLeaderRequest{Unit: u.GetUnit(), Node: follower.NodeName, Unclean: true})
			require.NoError(t, err)
		}
	}

	// With a minimum of 2 in-sync replicas the unit takes writes again once
	// the old leader is back, following the new one and truncated to it.
	leader.Restart(t)
	require.Eventually(t, func() bool {
		return len(placementOf(t, follower, q.GetId())[0].GetIsr()) == 2
	}, 30*time.Second, 50*time.Millisecond, "the old leader follows and catches up")
	leader.Send(t, q, "after")
	require.ElementsMatch(t, []string{"before", "after"}, receiveAll(t, leader, g, 2), "what was acknowledged is still there")
}

// A partition moves to other nodes while it is in use: the new replicas
// catch up as followers first, then the old one leaves and the leadership
// moves with it; nothing is lost and the old node deletes its copy.
func TestReassignReplicasMovesAPartitionOnline(t *testing.T) {
	_, nodes := startCluster(t, 3)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "moving", PartitionCount: 1, ReplicationFactor: 1})
	g := nodes[0].CreateGroup(t, q, "g")
	st := placementOf(t, nodes[0], q.GetId())[0]
	from := st.GetLeader()
	var to []string
	for _, s := range nodes {
		if s.NodeName != from {
			to = append(to, s.NodeName)
		}
	}
	var sent []string
	for i := range 100 {
		sent = append(sent, fmt.Sprint(i))
	}
	nodes[1].Send(t, q, sent[:50]...)

	admin := metadatav1.NewMetadataServiceClient(nodes[2].Internal)
	_, err := admin.ReassignReplicas(context.Background(), &metadatav1.ReassignReplicasRequest{Unit: st.GetUnit(), Replicas: to})
	require.NoError(t, err)
	nodes[0].Send(t, q, sent[50:]...)
	require.Eventually(t, func() bool {
		st := placementOf(t, nodes[0], q.GetId())[0]
		return len(st.GetTarget()) == 0 && slices.Equal(st.GetReplicas(), to) && slices.Contains(to, st.GetLeader()) && len(st.GetIsr()) == 2
	}, 30*time.Second, 50*time.Millisecond, "moved to %v", to)
	require.ElementsMatch(t, sent, receiveAll(t, nodes[1], g, len(sent)))
	old := nodes[slices.IndexFunc(nodes, func(s *testserver.Server) bool { return s.NodeName == from })]
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(old.DataDir, "storage", "q", q.GetId(), "0"))
		return os.IsNotExist(err)
	}, 10*time.Second, 20*time.Millisecond, "the old replica deleted its copy")
}

// With fewer in-sync replicas than the minimum, sends fail with a clear,
// retryable reason and nothing is stored; they succeed again once a
// replica is back.
func TestTooFewInSyncReplicasRefuseSends(t *testing.T) {
	_, nodes := startCluster(t, 3)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "strict", PartitionCount: 1})
	g := nodes[0].CreateGroup(t, q, "g")
	nodes[0].Send(t, q, "one")
	leader := placementOf(t, nodes[0], q.GetId())[0].GetLeader()
	// Keep one follower alive; stop the other follower and the leader.
	var stopped []*testserver.Server
	var alive *testserver.Server
	for _, s := range nodes {
		if alive == nil && s.NodeName != leader {
			alive = s
		} else {
			stopped = append(stopped, s)
		}
	}
	require.Len(t, stopped, 2)
	for _, s := range stopped {
		s.Server.Stop()
	}
	require.Eventually(t, func() bool {
		st := placementOf(t, alive, q.GetId())[0]
		return st.GetLeader() == alive.NodeName && len(st.GetIsr()) == 1
	}, 20*time.Second, 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := alive.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte("refused")}}})
	require.Equal(t, "NOT_ENOUGH_REPLICAS", rpcstatus.Reason(err), "%v", err)
	require.Equal(t, codes.Unavailable, status.Code(err))

	stopped[0].Restart(t)
	require.Eventually(t, func() bool {
		return len(placementOf(t, alive, q.GetId())[0].GetIsr()) == 2
	}, 30*time.Second, 50*time.Millisecond)
	alive.Send(t, q, "two")
	require.ElementsMatch(t, []string{"one", "two"}, receiveAll(t, alive, g, 2), "the refused send was not stored")
}
