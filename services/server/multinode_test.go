package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/testserver"
)

// startNodes runs n nodes with every role on one etcd, without replication
// (the default replication factor of 1): each partition lives on one node.
func startNodes(t *testing.T, n int) []*testserver.Server {
	t.Helper()
	etcd := testserver.StartEtcd(t)
	var nodes []*testserver.Server
	for i := range n {
		nodes = append(nodes, testserver.Start(t, testserver.WithFlags("-etcd.endpoints", etcd, "-node.name", fmt.Sprintf("n%d", i+1), "-node.session-ttl", "3s")))
	}
	return nodes
}

// Two nodes that both run storage used to keep each partition twice, with
// colliding offsets, and deliver half of what was acknowledged (300 sends
// answered, 150 delivered). Each partition now has one leader, whichever
// node a send or a receive goes to.
func TestTwoStorageNodesKeepOnePartitionEach(t *testing.T) {
	nodes := startNodes(t, 2)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "halves", PartitionCount: 4})
	g := nodes[1].CreateGroup(t, q, "g")
	var sent []string
	for i := range 300 {
		body := fmt.Sprint(i)
		nodes[i%2].Send(t, q, body)
		sent = append(sent, body)
	}
	var got []string
	for len(got) < len(sent) {
		msgs := nodes[len(got)%2].Receive(t, g, 100, 60*time.Second)
		if len(msgs) == 0 {
			break
		}
		for _, r := range nodes[0].Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, msgs...) {
			require.True(t, r.GetApplied(), r.GetErrorMessage())
		}
		got = append(got, testserver.Bodies(msgs)...)
	}
	require.ElementsMatch(t, sent, got)
}

// Two nodes that both run delivery used to deliver every message twice and
// refuse the acks of one another's deliveries. A group is now served by the
// owner of its delivery shard, whichever node takes the call: consumers
// on both nodes at once get each message once, and every ack applies.
func TestTwoDeliveryNodesServeAGroupOnce(t *testing.T) {
	nodes := startNodes(t, 2)
	for _, mode := range []dmsv1.QueueMode{dmsv1.QueueMode_QUEUE_MODE_NORMAL, dmsv1.QueueMode_QUEUE_MODE_FIFO} {
		t.Run(mode.String(), func(t *testing.T) {
			q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "once-" + mode.String()[11:], Mode: mode})
			g := nodes[0].CreateGroup(t, q, "g")
			const n = 200
			for i := range n / 10 {
				var bodies []string
				for j := range 10 {
					bodies = append(bodies, fmt.Sprint(i*10+j))
				}
				nodes[i%2].Send(t, q, bodies...)
			}
			var (
				mu   sync.Mutex
				seen = map[string]int{}
			)
			var wg sync.WaitGroup
			for _, node := range nodes {
				wg.Go(func() {
					for {
						mu.Lock()
						done := len(seen) == n
						mu.Unlock()
						if done {
							return
						}
						resp, err := node.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 7, WaitTime: durationpb.New(200 * time.Millisecond)})
						require.NoError(t, err)
						if len(resp.GetMessages()) == 0 {
							continue
						}
						for _, r := range node.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, resp.GetMessages()...) {
							require.True(t, r.GetApplied(), r.GetErrorMessage())
						}
						mu.Lock()
						for _, b := range testserver.Bodies(resp.GetMessages()) {
							seen[b]++
						}
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			for body, times := range seen {
				require.Equal(t, 1, times, "message %s delivered %d times", body, times)
			}
		})
	}
}

// Two nodes that both run the scheduler used to refuse half the delayed
// sends ("calls are not routed to a remote owner yet"). Each call now
// reaches the owner of the queue's timer shard.
func TestTwoSchedulerNodesTakeEveryDelayedSend(t *testing.T) {
	nodes := startNodes(t, 2)
	var queues []*dmsv1.Queue
	for i := range 6 { // queues spread over the timer shards and their owners
		queues = append(queues, nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: fmt.Sprintf("later%d", i)}))
	}
	for i, q := range queues {
		for j := range 5 {
			_, err := nodes[(i+j)%2].Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{
				{Body: []byte("x"), Delay: durationpb.New(500 * time.Millisecond)},
			}})
			require.NoError(t, err)
		}
	}
	for _, q := range queues {
		require.Eventually(t, func() bool {
			got, err := nodes[1].Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: q.GetName()})
			require.NoError(t, err)
			return got.GetQueue().GetMessageCount() == 5
		}, 20*time.Second, 20*time.Millisecond, "every delayed message released")
	}
}

// A node whose etcd lease is lost (here revoked, as when it was cut off from
// etcd past its lease) stops leading at once, registers again with a new
// lease, and serves again: it does not stay alive in a state where it can
// never serve.
func TestANodeThatLostItsLeaseRegistersAgain(t *testing.T) {
	nodes := startNodes(t, 1)
	s := nodes[0]
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "comeback"})
	g := s.CreateGroup(t, q, "g")
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.EtcdEndpoint}, Logger: zap.NewNop()})
	require.NoError(t, err)
	defer cli.Close()
	resp, err := cli.Get(context.Background(), placement.MemberKey(s.NodeName))
	require.NoError(t, err)
	require.Len(t, resp.Kvs, 1)
	old := clientv3.LeaseID(resp.Kvs[0].Lease)
	_, err = cli.Revoke(context.Background(), old)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		resp, err := cli.Get(context.Background(), placement.MemberKey(s.NodeName))
		return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) != old
	}, 20*time.Second, 20*time.Millisecond, "registered again under a new lease")
	require.Eventually(t, func() bool {
		_, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte("back")}}})
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "takes sends again")
	got := s.Receive(t, g, 10, 60*time.Second)
	require.True(t, slices.Contains(testserver.Bodies(got), "back"))
}

// Partitions added to a queue in use take new messages at once; messages
// with an ordering key stay on the partition their key had, so each key's
// order holds across the change; consumer groups read the new partitions.
func TestAddPartitionsKeepsKeysWhereTheyWere(t *testing.T) {
	nodes := startNodes(t, 2)
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "growing", PartitionCount: 2})
	g := nodes[0].CreateGroup(t, q, "g")
	send := func(via *testserver.Server, key string) int32 {
		resp, err := via.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte(key), OrderingKey: key}}})
		require.NoError(t, err)
		return resp.GetResults()[0].GetPartition()
	}
	before := map[string]int32{}
	for i := range 20 {
		key := fmt.Sprintf("k%d", i)
		before[key] = send(nodes[i%2], key)
	}
	resp, err := nodes[1].Queues().AddPartitions(context.Background(), &dmsv1.AddPartitionsRequest{Name: q.GetName(), PartitionCount: 5})
	require.NoError(t, err)
	require.EqualValues(t, 5, resp.GetQueue().GetPartitionCount())
	for key, p := range before {
		require.Equal(t, p, send(nodes[0], key), "key %s moved", key)
	}
	newPartitions := map[int32]bool{}
	for range 30 {
		r, err := nodes[1].Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte("unkeyed")}}})
		require.NoError(t, err)
		if p := r.GetResults()[0].GetPartition(); p >= 2 {
			newPartitions[p] = true
		}
	}
	require.NotEmpty(t, newPartitions, "unkeyed messages reach the new partitions")
	got := 0
	require.Eventually(t, func() bool {
		msgs := nodes[got%2].Receive(t, g, 100, 60*time.Second)
		nodes[0].Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, msgs...)
		got += len(msgs)
		return got == 20+20+30
	}, 20*time.Second, 10*time.Millisecond, "every message delivered, the new partitions' too")

	_, err = nodes[0].Queues().AddPartitions(context.Background(), &dmsv1.AddPartitionsRequest{Name: q.GetName(), PartitionCount: 5})
	require.Error(t, err, "not more partitions")
	fifo := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "fixed", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO})
	_, err = nodes[0].Queues().AddPartitions(context.Background(), &dmsv1.AddPartitionsRequest{Name: fifo.GetName(), PartitionCount: 2})
	require.Error(t, err, "a FIFO queue has one partition")
}
