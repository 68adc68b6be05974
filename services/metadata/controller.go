package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
)

// Controller keeps the placement of every unit of replication right, the
// way Kafka's controller does with ZooKeeper: etcd holds the placement, and
// one controller at a time (an etcd election among the metadata nodes)
// changes it, each change a compare-and-swap on the unit's record that also
// checks the controller still holds its election. It
//
//   - creates the delivery and scheduler shards once the cluster has enough
//     storage nodes, and places partitions of queues that have none (queues
//     from before replication, partitions added to a queue);
//   - elects a new leader, from the in-sync replicas only, when a leader's
//     node is gone, and takes gone nodes out of the in-sync replicas;
//   - gives each delivery and scheduler shard an owner, next to its leader
//     when it can, with a new epoch at every change;
//   - completes replica reassignments once the new replicas are in sync;
//   - notices a node that died at once (on every node, elected or not): a
//     node whose internal port refuses connections is not running, so its
//     lease is revoked instead of waiting for it to expire. A node that is paused or cut off does not
//     refuse connections; its lease expires and it fences itself.
type Controller struct {
	cfg       ControllerConfig
	cli       *clientv3.Client
	session   func() (*concurrency.Session, <-chan struct{})
	placement *placement.Cache
	catalog   *catalog.Cache
	node      string
	roles     []string
	logger    *slog.Logger

	catalogChanged chan struct{} // a catalog change to reconcile

	mu       sync.Mutex
	election *concurrency.Election // while this node is the controller
}

// ControllerConfig configures the controller.
type ControllerConfig struct {
	// ReplicationFactor and MinInsync of the delivery and scheduler shards.
	ReplicationFactor int
	MinInsync         int
	// ProbeInterval is how often the controller checks that each node's
	// internal port still accepts connections.
	ProbeInterval time.Duration
}

// NewController returns a controller that campaigns with the node's
// session.
func NewController(cfg ControllerConfig, cli *clientv3.Client, session func() (*concurrency.Session, <-chan struct{}),
	placements *placement.Cache, cat *catalog.Cache, node string, roles []string, logger *slog.Logger) *Controller {
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = 250 * time.Millisecond
	}
	c := &Controller{cfg: cfg, cli: cli, session: session, placement: placements, catalog: cat, node: node, roles: roles, logger: logger, catalogChanged: make(chan struct{}, 1)}
	cat.Subscribe(func(catalog.Event) {
		select {
		case c.catalogChanged <- struct{}{}:
		default:
		}
	})
	return c
}

// Run campaigns and, while elected, reconciles, until ctx ends. A lost
// session ends the term; the controller campaigns again with the next one.
func (c *Controller) Run(ctx context.Context) {
	// Every node probes, not only the elected controller: when the node
	// that dies is the controller, a survivor revokes its lease, which also
	// ends its term, instead of everyone waiting for the lease to expire.
	go c.probeLoop(ctx)
	for ctx.Err() == nil {
		s, lost := c.session()
		election := concurrency.NewElection(s, placement.ControllerKey)
		if err := election.Campaign(ctx, c.node); err != nil {
			if ctx.Err() == nil {
				c.logger.Warn("controller campaign failed; retrying", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		c.logger.Info("this node is the controller", "node", c.node)
		c.mu.Lock()
		c.election = election
		c.mu.Unlock()
		term, end := context.WithCancel(ctx)
		go func() {
			select {
			case <-lost:
			case <-term.Done():
			}
			end()
		}()
		c.lead(term)
		end()
		c.mu.Lock()
		c.election = nil
		c.mu.Unlock()
		if ctx.Err() != nil {
			rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = election.Resign(rctx)
			cancel()
			return
		}
		c.logger.Warn("controller term ended; campaigning again")
	}
}

// lead reconciles on every change of the placement or the catalog, and at
// least every second.
func (c *Controller) lead(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for ctx.Err() == nil {
		changed := c.placement.Changed()
		if err := c.reconcile(ctx); err != nil && ctx.Err() == nil {
			c.logger.Warn("controller: reconcile", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-changed:
		case <-c.catalogChanged:
		case <-tick.C:
		}
	}
}

// reconcile brings every unit to where it should be.
func (c *Controller) reconcile(ctx context.Context) error {
	info := c.placement.Info()
	if info == nil {
		return nil
	}
	nodes := c.placement.Nodes()
	// This node runs, whether or not it has registered yet (it registers
	// once every module is up, and the controller starts before).
	if !slices.ContainsFunc(nodes, func(n placement.Node) bool { return n.Name == c.node }) {
		nodes = append(nodes, placement.Node{Name: c.node, Roles: c.roles})
	}
	alive := func(n string) bool { return n == c.node || c.placement.Alive(n) }
	load := c.placement.Load()
	var errsOut []error

	// Units that should exist and do not.
	var missing []*metadatav1.PartitionState
	for kind, n := range map[storagev1.UnitKind]int32{
		storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD:  info.GetDeliveryShards(),
		storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD: info.GetSchedulerShards(),
	} {
		for shard := range n {
			u := &storagev1.UnitId{Kind: kind, Shard: shard}
			if _, ok := c.placement.Unit(u); ok {
				continue
			}
			replicas, err := placement.ChooseReplicas(nodes, load, c.cfg.ReplicationFactor)
			if err != nil {
				// Not enough storage nodes yet: the shards wait for them.
				continue
			}
			missing = append(missing, placement.NewPartitionState(u, replicas, placement.MinInsyncFor(c.cfg.ReplicationFactor, c.cfg.MinInsync)))
		}
	}
	for _, q := range c.catalog.Queues("") {
		rf := int(max(q.GetReplicationFactor(), 1))
		for p := range q.GetPartitionCount() {
			u := placement.PartitionUnit(q.GetId(), p)
			if _, ok := c.placement.Unit(u); ok {
				continue
			}
			replicas, err := placement.ChooseReplicas(nodes, load, rf)
			if err != nil {
				errsOut = append(errsOut, fmt.Errorf("placing partition %d of queue %s: %w", p, q.GetId(), err))
				continue
			}
			missing = append(missing, placement.NewPartitionState(u, replicas, placement.MinInsyncFor(rf, c.cfg.MinInsync)))
		}
	}
	for _, st := range missing {
		if role := placement.OwnerRole(st.GetUnit()); role != "" {
			st.Owner, st.OwnerEpoch = placement.ChooseOwner(st, nodes, role, load), 1
			load.Owned[st.GetOwner()]++
		}
		if err := c.create(ctx, st); err != nil {
			errsOut = append(errsOut, err)
		}
	}

	// Units whose leader, in-sync replicas, owner or reassignment must move.
	for _, cur := range c.placement.Units() {
		next := proto.CloneOf(cur.PartitionState)
		c.heal(next, nodes, alive, load)
		if proto.Equal(next, cur.PartitionState) {
			continue
		}
		if err := c.swap(ctx, cur, next); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	return errors.Join(errsOut...)
}

// heal changes st to what it should be now.
func (c *Controller) heal(st *metadatav1.PartitionState, nodes []placement.Node, alive func(string) bool, load placement.Load) {
	// Gone nodes leave the in-sync replicas; one is kept when all are gone,
	// so that the unit can come back when that node does.
	isr := slices.DeleteFunc(slices.Clone(st.GetIsr()), func(n string) bool { return !alive(n) })
	if len(isr) == 0 && len(st.GetIsr()) > 0 {
		isr = st.GetIsr()[:1]
		if slices.Contains(st.GetIsr(), st.GetLeader()) {
			isr = []string{st.GetLeader()}
		}
	}
	st.Isr = isr
	// A reassignment is done once every target replica is in sync.
	if t := st.GetTarget(); len(t) > 0 && !slices.ContainsFunc(t, func(n string) bool { return !slices.Contains(st.GetIsr(), n) }) {
		st.Replicas, st.Target = slices.Clone(t), nil
		st.Isr = slices.DeleteFunc(st.Isr, func(n string) bool { return !slices.Contains(t, n) })
		if !slices.Contains(t, st.GetLeader()) {
			st.Leader = ""
		}
	}
	if st.GetLeader() == "" || !alive(st.GetLeader()) || !slices.Contains(st.GetIsr(), st.GetLeader()) {
		if leader := placement.ChooseLeader(st, alive); leader != st.GetLeader() || st.GetLeader() == "" {
			if leader != "" || st.GetLeader() != "" {
				st.Leader = leader
				st.LeaderEpoch++
			}
		}
	}
	if role := placement.OwnerRole(st.GetUnit()); role != "" {
		owner := st.GetOwner()
		ownerOK := owner != "" && alive(owner) && slices.ContainsFunc(nodes, func(n placement.Node) bool { return n.Name == owner && n.Has(role) })
		leaderCanOwn := slices.ContainsFunc(nodes, func(n placement.Node) bool { return n.Name == st.GetLeader() && n.Has(role) })
		if !ownerOK || (owner != st.GetLeader() && leaderCanOwn) {
			// A gone owner is kept while no node can take over: nobody
			// writes meanwhile, and its epoch stays the newest.
			if next := placement.ChooseOwner(st, nodes, role, load); next != owner && next != "" {
				load.Owned[owner]--
				load.Owned[next]++
				st.Owner = next
				st.OwnerEpoch++
			}
		}
	}
}

// guard is the condition that this node still holds the controller's
// election; every write of the controller carries it.
func (c *Controller) guard() (clientv3.Cmp, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.election == nil {
		return clientv3.Cmp{}, false
	}
	return clientv3.Compare(clientv3.CreateRevision(c.election.Key()), "=", c.election.Rev()), true
}

func (c *Controller) create(ctx context.Context, st *metadatav1.PartitionState) error {
	guard, ok := c.guard()
	if !ok {
		return errs.Wrapf(errs.ErrNotLeader, "metadata: this node is no longer the controller")
	}
	value, err := proto.Marshal(st)
	if err != nil {
		return err
	}
	key := placement.PlacementKey(st.GetUnit())
	conds := []clientv3.Cmp{guard, clientv3.Compare(clientv3.CreateRevision(key), "=", 0)}
	if q := st.GetUnit().GetQueueId(); q != "" {
		// This node's catalog may not have seen the queue go yet: the queue
		// must still exist when its partition is placed.
		conds = append(conds, clientv3.Compare(clientv3.CreateRevision(catalog.QueueKey(q)), ">", 0))
	}
	resp, err := c.cli.Txn(ctx).If(conds...).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return fmt.Errorf("controller: creating %s: %w", placement.UnitKey(st.GetUnit()), err)
	}
	if resp.Succeeded {
		c.logger.Info("controller: unit placed", "unit", placement.UnitKey(st.GetUnit()), "replicas", st.GetReplicas(), "leader", st.GetLeader(), "owner", st.GetOwner())
	}
	return nil
}

// swap replaces a unit's placement if nobody changed it meanwhile.
func (c *Controller) swap(ctx context.Context, cur placement.State, next *metadatav1.PartitionState) error {
	guard, ok := c.guard()
	if !ok {
		return errs.Wrapf(errs.ErrNotLeader, "metadata: this node is no longer the controller")
	}
	value, err := proto.Marshal(next)
	if err != nil {
		return err
	}
	key := placement.PlacementKey(next.GetUnit())
	resp, err := c.cli.Txn(ctx).If(guard, clientv3.Compare(clientv3.ModRevision(key), "=", cur.ModRevision)).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return fmt.Errorf("controller: updating %s: %w", placement.UnitKey(next.GetUnit()), err)
	}
	if resp.Succeeded {
		c.logger.Info("controller: unit changed", "unit", placement.UnitKey(next.GetUnit()),
			"leader", next.GetLeader(), "epoch", next.GetLeaderEpoch(), "isr", next.GetIsr(), "owner", next.GetOwner(), "owner_epoch", next.GetOwnerEpoch(),
			"was_leader", cur.GetLeader(), "was_isr", cur.GetIsr())
	}
	return nil
}

// probeLoop revokes the lease of a node whose internal port refuses
// connections twice in a row: nothing listens there, so the node's process
// is gone (a restarted process registers anew), and its leaderships can move
// now rather than when its lease expires.
func (c *Controller) probeLoop(ctx context.Context) {
	refused := map[string]int{} // consecutive refused probes, by node
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range c.placement.Nodes() {
			if n.Name == c.node {
				continue
			}
			m, ok := c.placement.Member(n.Name)
			if !ok {
				continue
			}
			conn, err := net.DialTimeout("tcp", m.GetInternalGrpcAddress(), c.cfg.ProbeInterval)
			if err == nil {
				conn.Close()
				delete(refused, n.Name)
				continue
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				continue // a timeout proves nothing
			}
			refused[n.Name]++
			if refused[n.Name] < 2 {
				continue
			}
			delete(refused, n.Name)
			lease, ok := c.placement.MemberLease(n.Name)
			if !ok || lease == 0 {
				continue
			}
			c.logger.Warn("controller: node refuses connections; revoking its lease so that its units fail over", "node", n.Name, "addr", m.GetInternalGrpcAddress())
			if _, err := c.cli.Revoke(ctx, lease); err != nil {
				c.logger.Warn("controller: revoking the lease of a dead node", "node", n.Name, "err", err)
			}
		}
	}
}
