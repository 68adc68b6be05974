// Package faulttest is the fault harness of a DMS cluster: three dmsd
// processes built from this repository on a real etcd, a steady producer
// and consumer load through the native gRPC API on a NORMAL and a FIFO
// queue replicated three times, and faults injected in cycles — SIGKILL of
// a partition's leader and of a random node, SIGSTOP of a leader past its
// lease, a node's etcd connection lost, a node cut off from the others and
// etcd (proxies in front of each node's internal port and etcd connection;
// see Network). A checker then reads everything back (Check).
//
// The test runs a few cycles in the default `go test`; `make fault-test`
// runs FAULT_CYCLES of each kind and prints the figures.
package faulttest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/placement"
)

// Kinds of fault cycle, in the order each round runs them.
const (
	KillLeader  = "kill-leader"  // SIGKILL the leader of a partition, restart it
	KillRandom  = "kill-random"  // SIGKILL any node, restart it
	PauseLeader = "pause-leader" // SIGSTOP a leader past its lease, then SIGCONT
	EtcdLoss    = "etcd-loss"    // a leader's etcd connection reset and refused past its lease
	Partition   = "partition"    // a leader cut off from the other nodes and etcd past its lease
)

// Kinds are all the kinds of fault.
var Kinds = []string{KillLeader, KillRandom, PauseLeader, EtcdLoss, Partition}

// Options of a run.
type Options struct {
	Rounds     int           // each round runs one cycle of every kind
	Kinds      []string      // the kinds of fault; empty is all (Kinds)
	SessionTTL time.Duration // -node.session-ttl of the nodes
	Seed       uint64
	Logf       func(format string, args ...any)
}

const project = "0123456789abcdef0123456789abcdef"

// harness is one run.
type harness struct {
	t      testing.TB
	opt    Options
	c      *Cluster
	load   *Load
	rng    *rand.Rand
	report *Report

	normal, fifo *dmsv1.Queue
	probeKeys    map[int32]string // NORMAL partition → an ordering key that lands there
	probes       int
}

// Run starts a cluster, runs the load and the fault rounds, drains, and
// returns the checker's report.
func Run(t testing.TB, opt Options) *Report {
	t.Helper()
	if len(opt.Kinds) == 0 {
		opt.Kinds = Kinds
	}
	h := &harness{t: t, opt: opt, rng: rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x5eed)), report: &Report{Cycles: map[string]int{}}}
	opt.Logf("building dmsd and starting 3 nodes (session TTL %s, seed %d)", opt.SessionTTL, opt.Seed)
	h.c = StartCluster(t, BuildDMSD(t), 3, opt.SessionTTL)
	h.load = &Load{c: h.c, rec: newRecord()}
	h.settle("start")
	h.createQueues()

	ctx, stopProducers := context.WithCancel(context.Background())
	cctx, stopConsumers := context.WithCancel(context.Background())
	var producers, consumers sync.WaitGroup
	for i := range 2 {
		producers.Go(func() {
			h.load.produce(ctx, producer{queue: h.normal, name: fmt.Sprintf("normal-p%d", i), batch: 5, pause: 50 * time.Millisecond}, i)
		})
	}
	for i := range 3 {
		producers.Go(func() {
			name := fmt.Sprintf("fifo-k%d", i)
			h.load.produce(ctx, producer{queue: h.fifo, name: name, key: name, batch: 1, pause: 30 * time.Millisecond}, i)
		})
	}
	for i := range 2 {
		consumers.Go(func() { h.load.consume(cctx, h.normal, h.group(h.normal), i) })
		consumers.Go(func() { h.load.consume(cctx, h.fifo, h.group(h.fifo), i+1) })
	}
	time.Sleep(2 * time.Second)

	start := time.Now()
rounds:
	for round := range opt.Rounds {
		for _, kind := range opt.Kinds {
			if !h.settle(fmt.Sprintf("round %d, before %s", round+1, kind)) {
				break rounds
			}
			h.cycle(ctx, round, kind)
			h.report.Cycles[kind]++
		}
		opt.Logf("round %d of %d done after %s", round+1, opt.Rounds, time.Since(start).Round(time.Second))
	}
	h.settle("end")

	stopProducers()
	producers.Wait()
	// Drain: every acknowledged message must come; a message whose ack went
	// unanswered comes back after its visibility timeout (15 s).
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) && len(Check(h.load.rec, h.fifo.GetName()).Lost) > 0 {
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(time.Second) // what is in flight now is recorded as delivered
	stopConsumers()
	consumers.Wait()

	r := Check(h.load.rec, h.fifo.GetName())
	r.Cycles, r.Failovers, r.Problems = h.report.Cycles, h.report.Failovers, h.report.Problems
	if n := h.c.Net.Unknown(); n > 0 {
		opt.Logf("%d proxied connections of unknown source (probes that closed at once)", n)
	}
	return r
}

func (h *harness) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.opt.Logf("PROBLEM: %s", msg)
	h.report.Problems = append(h.report.Problems, msg)
	h.c.DumpGoroutines(msg)
}

// settle waits until every unit has its three replicas in sync; a cluster
// that does not get there is a problem, and the rounds stop.
func (h *harness) settle(when string) bool {
	ok, why := h.c.WaitSettled(60 * time.Second)
	if !ok {
		h.problem("%s: the cluster did not settle in 60 s: %s", when, why)
	}
	return ok
}

func (h *harness) createQueues() {
	queues := dmsv1.NewQueueServiceClient(h.c.Nodes[0].Conn)
	create := func(q *dmsv1.Queue) *dmsv1.Queue {
		resp, err := queues.CreateQueue(context.Background(), &dmsv1.CreateQueueRequest{Parent: "projects/" + project, Queue: q})
		if err != nil {
			h.t.Fatalf("create queue %s: %v", q.GetDisplayName(), err)
		}
		if _, err := queues.CreateConsumerGroup(context.Background(), &dmsv1.CreateConsumerGroupRequest{Parent: resp.GetQueue().GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g"}}); err != nil {
			h.t.Fatalf("create group: %v", err)
		}
		return resp.GetQueue()
	}
	h.normal = create(&dmsv1.Queue{DisplayName: "faults-normal", Mode: dmsv1.QueueMode_QUEUE_MODE_NORMAL, PartitionCount: 3, ReplicationFactor: 3})
	h.fifo = create(&dmsv1.Queue{DisplayName: "faults-fifo", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO, ReplicationFactor: 3})
	if !h.settle("queues created") {
		h.t.FailNow()
	}
	// An ordering key for each NORMAL partition, for the failover probes.
	h.probeKeys = map[int32]string{}
	for i := 0; len(h.probeKeys) < int(h.normal.GetPartitionCount()) && i < 1000; i++ {
		key := fmt.Sprintf("probe-key-%d", i)
		body := fmt.Sprintf("setup-%d", i)
		_, at, res := h.load.SendUntilAcked(context.Background(), h.normal, h.c.Nodes, 0, body, []*dmsv1.Message{{Body: []byte(body), OrderingKey: key}}, 10*time.Second)
		if at.IsZero() {
			h.t.Fatal("setup send not acknowledged")
		}
		if _, ok := h.probeKeys[res[0].GetPartition()]; !ok {
			h.probeKeys[res[0].GetPartition()] = key
		}
	}
}

func (h *harness) group(q *dmsv1.Queue) *dmsv1.ConsumerGroup {
	resp, err := dmsv1.NewQueueServiceClient(h.c.Nodes[0].Conn).ListConsumerGroups(context.Background(), &dmsv1.ListConsumerGroupsRequest{Parent: q.GetName()})
	if err != nil || len(resp.GetGroups()) != 1 {
		h.t.Fatalf("list groups of %s: %v", q.GetName(), err)
	}
	return resp.GetGroups()[0]
}

// target is the partition whose leader a cycle strikes: the FIFO queue's,
// then each NORMAL partition in turn.
func (h *harness) target(round int, kind string) (q *dmsv1.Queue, partition int32) {
	i := round*len(Kinds) + indexOf(Kinds, kind)
	if i%2 == 0 {
		return h.fifo, 0
	}
	return h.normal, int32(i/2) % h.normal.GetPartitionCount()
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// leaderOf returns the leader of a queue partition and its epoch, asked of
// nodes other than avoid.
func (h *harness) leaderOf(q *dmsv1.Queue, partition int32, avoid *Node) (string, int64) {
	unit := placement.PartitionUnit(q.GetId(), partition)
	for _, n := range h.c.Nodes {
		if n == avoid {
			continue
		}
		resp, err := h.c.PlacementFrom(n)
		if err != nil {
			continue
		}
		for _, u := range resp.GetUnits() {
			if sameUnit(u.GetUnit(), unit) {
				return u.GetLeader(), u.GetLeaderEpoch()
			}
		}
	}
	return "", 0
}

func sameUnit(a, b *storagev1.UnitId) bool {
	return a.GetKind() == b.GetKind() && a.GetQueueId() == b.GetQueueId() && a.GetPartition() == b.GetPartition() && a.GetShard() == b.GetShard()
}

// cycle runs one fault.
func (h *harness) cycle(ctx context.Context, round int, kind string) {
	q, partition := h.target(round, kind)
	leader, epoch := h.leaderOf(q, partition, nil)
	victim := h.c.Node(leader)
	if victim == nil {
		h.problem("%s: no leader for %s partition %d", kind, q.GetDisplayName(), partition)
		return
	}
	if kind == KillRandom {
		victim = h.c.Nodes[h.rng.IntN(len(h.c.Nodes))]
	}
	hold := h.opt.SessionTTL + time.Second // past the lease
	h.opt.Logf("round %d %s: %s (leader of %s/%d at epoch %d is %s)", round+1, kind, victim.Name, q.GetDisplayName(), partition, epoch, leader)
	switch kind {
	case KillLeader:
		killed := time.Now()
		h.c.Kill(victim)
		if took, ok := h.probe(ctx, q, partition, victim, killed); ok {
			h.report.Failovers = append(h.report.Failovers, took)
			h.opt.Logf("  failover: first acknowledged send %s after the kill", took.Round(time.Millisecond))
		}
		time.Sleep(time.Duration(500+h.rng.IntN(1000)) * time.Millisecond)
		h.c.Restart(victim)
	case KillRandom:
		h.c.Kill(victim)
		time.Sleep(time.Duration(500+h.rng.IntN(1500)) * time.Millisecond)
		h.c.Restart(victim)
	case PauseLeader:
		h.c.Pause(victim)
		// A send waiting at the paused node: it is answered after SIGCONT,
		// and if with success, it must be kept like any other.
		zombie := make(chan struct{})
		h.probes++
		body := fmt.Sprintf("zombie-%d", h.probes)
		zctx, cancel := context.WithTimeout(ctx, hold+20*time.Second)
		defer cancel()
		go func() {
			defer close(zombie)
			h.load.SendUntilAcked(zctx, q, []*Node{victim}, 0, body, []*dmsv1.Message{{Body: []byte(body), OrderingKey: h.probeKey(q, partition)}}, hold+15*time.Second)
		}()
		h.waitNewLeader(kind, q, partition, leader, epoch, victim, hold)
		h.c.Resume(victim)
		<-zombie
	case EtcdLoss:
		h.c.CutEtcd(victim)
		h.waitNewLeader(kind, q, partition, leader, epoch, victim, hold)
		h.c.RestoreEtcd(victim)
	case Partition:
		h.c.Net.Partition(victim.Name)
		h.waitNewLeader(kind, q, partition, leader, epoch, victim, hold)
		h.c.Net.Heal(victim.Name)
	}
}

// waitNewLeader holds a fault for at least hold and until the partition has
// another leader with a newer epoch; one that does not come within 15 s
// past hold is a problem (a failover that is stuck).
func (h *harness) waitNewLeader(kind string, q *dmsv1.Queue, partition int32, old string, epoch int64, victim *Node, hold time.Duration) {
	start := time.Now()
	for {
		leader, e := h.leaderOf(q, partition, victim)
		moved := leader != "" && leader != old && e > epoch
		if moved && time.Since(start) >= hold {
			h.opt.Logf("  new leader %s at epoch %d", leader, e)
			return
		}
		if time.Since(start) > hold+15*time.Second {
			h.problem("%s: %s/%d still led by %s (epoch %d) %s after the fault", kind, q.GetDisplayName(), partition, leader, e, time.Since(start).Round(time.Second))
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (h *harness) probeKey(q *dmsv1.Queue, partition int32) string {
	if q == h.fifo {
		return "probe-fifo"
	}
	return h.probeKeys[partition]
}

// probe sends to the partition through the surviving nodes from the kill
// on, until a send is acknowledged, and returns how long after the kill
// that was. Every probe is a checked message like the load's.
func (h *harness) probe(ctx context.Context, q *dmsv1.Queue, partition int32, victim *Node, killed time.Time) (time.Duration, bool) {
	var survivors []*Node
	for _, n := range h.c.Nodes {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	h.probes++
	name := "probe-normal"
	if q == h.fifo {
		name = "probe-fifo"
	}
	body := fmt.Sprintf("%s-%d", name, h.probes)
	_, at, res := h.load.SendUntilAcked(pctx, q, survivors, h.rng.IntN(2), body, []*dmsv1.Message{{Body: []byte(body), OrderingKey: h.probeKey(q, partition)}}, 2*time.Second)
	if at.IsZero() {
		h.problem("%s: no send to %s/%d acknowledged within 30 s of killing its leader %s", KillLeader, q.GetDisplayName(), partition, victim.Name)
		return 0, false
	}
	if res[0].GetPartition() != partition {
		h.problem("probe key %q went to partition %d, not %d", h.probeKey(q, partition), res[0].GetPartition(), partition)
	}
	return at.Sub(killed), true
}
