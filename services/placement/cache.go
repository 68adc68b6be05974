package placement

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/errs"
)

// State is a unit's placement as the cache holds it, with the etcd
// revision it was last written at (the guard of a compare-and-swap).
type State struct {
	*metadatav1.PartitionState
	ModRevision int64
}

// Cache is a local copy of the members, the cluster info and the placement,
// kept current by one etcd watch. Reads never go to etcd.
type Cache struct {
	cli    *clientv3.Client
	logger *slog.Logger

	mu       sync.RWMutex
	info     *metadatav1.ClusterInfo
	units    map[string]State              // by UnitKey
	members  map[string]*metadatav1.Member // by node
	leases   map[string]clientv3.LeaseID   // by node: the lease its registration lives under
	revision int64
	changed  chan struct{} // closed and replaced at every applied change
}

// NewCache returns an empty cache; Start fills it.
func NewCache(cli *clientv3.Client, logger *slog.Logger) *Cache {
	return &Cache{cli: cli, logger: logger, units: map[string]State{}, members: map[string]*metadatav1.Member{},
		leases: map[string]clientv3.LeaseID{}, changed: make(chan struct{})}
}

// Start loads everything, then follows etcd until ctx ends.
func (c *Cache) Start(ctx context.Context) error {
	rev, err := c.reload(ctx)
	if err != nil {
		return err
	}
	go c.watchLoop(ctx, rev)
	return nil
}

var prefixes = []string{MembersPrefix, ClusterInfoKey, PlacementPrefix}

func (c *Cache) reload(ctx context.Context) (int64, error) {
	// One transaction, so that the three parts are of one revision.
	resp, err := c.cli.Txn(ctx).Then(
		clientv3.OpGet(MembersPrefix, clientv3.WithPrefix()),
		clientv3.OpGet(ClusterInfoKey),
		clientv3.OpGet(PlacementPrefix, clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return 0, errs.Wrapf(errs.ErrUnavailable, "placement: reading etcd: %v", err)
	}
	c.mu.Lock()
	c.info, c.units, c.members, c.leases = nil, map[string]State{}, map[string]*metadatav1.Member{}, map[string]clientv3.LeaseID{}
	for _, r := range resp.Responses {
		for _, kv := range r.GetResponseRange().GetKvs() {
			c.applyLocked(string(kv.Key), kv.Value, kv.ModRevision, clientv3.LeaseID(kv.Lease), false)
		}
	}
	c.revision = resp.Header.Revision
	c.signalLocked()
	c.mu.Unlock()
	return resp.Header.Revision, nil
}

func (c *Cache) watchLoop(ctx context.Context, rev int64) {
	for ctx.Err() == nil {
		wch := c.cli.Watch(clientv3.WithRequireLeader(ctx), "/dms/", clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
		for resp := range wch {
			if err := resp.Err(); err != nil {
				c.logger.Warn("placement watch interrupted; reloading", "err", err)
				break
			}
			c.mu.Lock()
			for _, ev := range resp.Events {
				c.applyLocked(string(ev.Kv.Key), ev.Kv.Value, ev.Kv.ModRevision, clientv3.LeaseID(ev.Kv.Lease), ev.Type == clientv3.EventTypeDelete)
			}
			if resp.Header.Revision > c.revision {
				c.revision = resp.Header.Revision
			}
			c.signalLocked()
			c.mu.Unlock()
			rev = resp.Header.Revision
		}
		for ctx.Err() == nil {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			if r, err := c.reload(ctx); err == nil {
				rev = r
				break
			}
		}
	}
}

func (c *Cache) applyLocked(key string, value []byte, modRev int64, lease clientv3.LeaseID, deleted bool) {
	switch {
	case strings.HasPrefix(key, MembersPrefix):
		node := strings.TrimPrefix(key, MembersPrefix)
		if deleted {
			delete(c.members, node)
			delete(c.leases, node)
			return
		}
		m := &metadatav1.Member{}
		if err := proto.Unmarshal(value, m); err != nil {
			c.logger.Error("placement: undecodable member", "key", key, "err", err)
			return
		}
		c.members[node], c.leases[node] = m, lease
	case key == ClusterInfoKey:
		if deleted {
			c.info = nil
			return
		}
		info := &metadatav1.ClusterInfo{}
		if err := proto.Unmarshal(value, info); err != nil {
			c.logger.Error("placement: undecodable cluster info", "err", err)
			return
		}
		c.info = info
	case strings.HasPrefix(key, PlacementPrefix):
		unitKey := strings.TrimPrefix(key, PlacementPrefix)
		if deleted {
			delete(c.units, unitKey)
			return
		}
		st := &metadatav1.PartitionState{}
		if err := proto.Unmarshal(value, st); err != nil {
			c.logger.Error("placement: undecodable unit placement", "key", key, "err", err)
			return
		}
		c.units[unitKey] = State{PartitionState: st, ModRevision: modRev}
	}
}

func (c *Cache) signalLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change the cache applies.
func (c *Cache) Changed() <-chan struct{} {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.changed
}

// Revision is the etcd revision the cache reflects.
func (c *Cache) Revision() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.revision
}

// WaitForRevision blocks until the cache reflects etcd revision rev.
func (c *Cache) WaitForRevision(ctx context.Context, rev int64) error {
	for {
		c.mu.RLock()
		current, changed := c.revision, c.changed
		c.mu.RUnlock()
		if current >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Info returns the cluster info, nil before the cluster was created.
func (c *Cache) Info() *metadatav1.ClusterInfo {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.info
}

// Unit returns a unit's placement.
func (c *Cache) Unit(u Unit) (State, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, ok := c.units[UnitKey(u)]
	return st, ok
}

// Units returns every unit's placement, in key order.
func (c *Cache) Units() []State {
	c.mu.RLock()
	out := make([]State, 0, len(c.units))
	for _, st := range c.units {
		out = append(out, st)
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b State) int { return strings.Compare(UnitKey(a.GetUnit()), UnitKey(b.GetUnit())) })
	return out
}

// Member returns a node's registration.
func (c *Cache) Member(node string) (*metadatav1.Member, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.members[node]
	return m, ok
}

// MemberLease returns the lease a node's registration lives under.
func (c *Cache) MemberLease(node string) (clientv3.LeaseID, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	l, ok := c.leases[node]
	return l, ok
}

// Alive reports whether a node is registered (its session is alive).
func (c *Cache) Alive(node string) bool {
	_, ok := c.Member(node)
	return ok
}

// Nodes returns the registered nodes, by name.
func (c *Cache) Nodes() []Node {
	c.mu.RLock()
	out := make([]Node, 0, len(c.members))
	for name, m := range c.members {
		out = append(out, Node{Name: name, Zone: m.GetZone(), Roles: m.GetRoles()})
	}
	c.mu.RUnlock()
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Load counts the placement of every unit.
func (c *Cache) Load() Load {
	load := NewLoad()
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, st := range c.units {
		load.Add(st.PartitionState)
	}
	return load
}
