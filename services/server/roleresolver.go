package server

import (
	"context"
	"slices"
	"sync"

	"google.golang.org/grpc/resolver"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
)

// roleScheme is the gRPC target scheme `dms-role:///{role}` that resolves to
// the processes running a role, as registered in etcd.
const roleScheme = "dms-role"

// roleResolver gives gRPC the internal addresses of the members running
// each role, from the placement cache's view of the member registry. A role
// this process runs itself resolves to this process only, so that an
// all-in-one dmsd never sends a call to a neighbour.
type roleResolver struct {
	members    *placement.Cache
	self       *metadatav1.Member
	selfAddr   string // where this process listens, which it dials itself at
	mu         sync.Mutex
	subs       map[*roleConn]struct{}
	cancelFunc context.CancelFunc
}

type roleConn struct {
	role string // or node name, with node set
	node bool
	cc   resolver.ClientConn
	r    *roleResolver
}

func newRoleResolver(members *placement.Cache, self *metadatav1.Member, selfAddr string) *roleResolver {
	return &roleResolver{members: members, self: self, selfAddr: selfAddr, subs: map[*roleConn]struct{}{}}
}

// start follows the member registry until stop.
func (r *roleResolver) start(ctx context.Context) {
	ctx, r.cancelFunc = context.WithCancel(ctx)
	go func() {
		for {
			changed := r.members.Changed()
			r.updateAll()
			select {
			case <-changed:
			case <-ctx.Done():
				return
			}
		}
	}()
}

func (r *roleResolver) stop() {
	if r.cancelFunc != nil {
		r.cancelFunc()
	}
}

func (r *roleResolver) addresses(role string) []resolver.Address {
	if slices.Contains(r.self.GetRoles(), role) {
		return []resolver.Address{{Addr: r.selfAddr}}
	}
	var out []resolver.Address
	for _, n := range r.members.Nodes() {
		if m, ok := r.members.Member(n.Name); ok && n.Has(role) {
			out = append(out, resolver.Address{Addr: m.GetInternalGrpcAddress()})
		}
	}
	return out
}

func (r *roleResolver) updateAll() {
	r.mu.Lock()
	subs := make([]*roleConn, 0, len(r.subs))
	for s := range r.subs {
		subs = append(subs, s)
	}
	r.mu.Unlock()
	for _, s := range subs {
		s.update()
	}
}

// Build implements resolver.Builder.
func (r *roleResolver) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	rc := &roleConn{role: target.Endpoint(), cc: cc, r: r}
	r.mu.Lock()
	r.subs[rc] = struct{}{}
	r.mu.Unlock()
	rc.update()
	return rc, nil
}

// Scheme implements resolver.Builder.
func (r *roleResolver) Scheme() string { return roleScheme }

func (c *roleConn) update() {
	addrs := c.r.addresses(c.role)
	if c.node {
		addrs = c.r.nodeAddresses(c.role)
	}
	if len(addrs) == 0 {
		if c.node {
			c.cc.ReportError(errNoNode(c.role))
		} else {
			c.cc.ReportError(errNoMember(c.role))
		}
		return
	}
	_ = c.cc.UpdateState(resolver.State{Addresses: addrs})
}

// ResolveNow implements resolver.Resolver.
func (c *roleConn) ResolveNow(resolver.ResolveNowOptions) { c.update() }

// Close implements resolver.Resolver.
func (c *roleConn) Close() {
	c.r.mu.Lock()
	delete(c.r.subs, c)
	c.r.mu.Unlock()
}

type errNoMember string

func (e errNoMember) Error() string { return "no running dmsd has the " + string(e) + " role" }

// nodeScheme is the gRPC target scheme `dms-node:///{node}` that resolves to
// a node's internal address, which changes when it restarts.
const nodeScheme = "dms-node"

// nodeResolver resolves node names from the member registry.
type nodeResolver struct{ r *roleResolver }

// Build implements resolver.Builder.
func (n nodeResolver) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	rc := &roleConn{role: target.Endpoint(), cc: cc, r: n.r, node: true}
	n.r.mu.Lock()
	n.r.subs[rc] = struct{}{}
	n.r.mu.Unlock()
	rc.update()
	return rc, nil
}

// Scheme implements resolver.Builder.
func (nodeResolver) Scheme() string { return nodeScheme }

func (r *roleResolver) nodeAddresses(node string) []resolver.Address {
	if node == r.self.GetNode() {
		return []resolver.Address{{Addr: r.selfAddr}}
	}
	if m, ok := r.members.Member(node); ok {
		return []resolver.Address{{Addr: m.GetInternalGrpcAddress()}}
	}
	return nil
}

type errNoNode string

func (e errNoNode) Error() string {
	return "node " + string(e) + " is not registered (down, or cut off from etcd)"
}
