package server

import (
	"context"
	"log/slog"
	"slices"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/resolver"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/catalog"
)

// roleScheme is the gRPC target scheme `dms-role:///{role}` that resolves to
// the processes running a role, as registered in etcd.
const roleScheme = "dms-role"

// roleResolver watches the member registry in etcd and gives gRPC the
// internal addresses of the members running each role. A role this process runs
// itself resolves to this process only, so that an all-in-one dmsd never
// sends a call to a neighbour.
type roleResolver struct {
	cli        *clientv3.Client
	self       *metadatav1.Member
	logger     *slog.Logger
	mu         sync.Mutex
	members    map[string]*metadatav1.Member
	subs       map[*roleConn]struct{}
	cancelFunc context.CancelFunc
}

type roleConn struct {
	role string
	cc   resolver.ClientConn
	r    *roleResolver
}

func newRoleResolver(cli *clientv3.Client, self *metadatav1.Member, logger *slog.Logger) *roleResolver {
	return &roleResolver{cli: cli, self: self, logger: logger, members: map[string]*metadatav1.Member{}, subs: map[*roleConn]struct{}{}}
}

// start loads the registry and follows it until stop.
func (r *roleResolver) start(ctx context.Context) error {
	ctx, r.cancelFunc = context.WithCancel(ctx)
	resp, err := r.cli.Get(ctx, catalog.MembersPrefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	for _, kv := range resp.Kvs {
		r.apply(string(kv.Key), kv.Value, false)
	}
	go func() {
		for wr := range r.cli.Watch(ctx, catalog.MembersPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			for _, ev := range wr.Events {
				r.apply(string(ev.Kv.Key), ev.Kv.Value, ev.Type == clientv3.EventTypeDelete)
			}
			r.updateAll()
		}
	}()
	return nil
}

func (r *roleResolver) stop() {
	if r.cancelFunc != nil {
		r.cancelFunc()
	}
}

func (r *roleResolver) apply(key string, value []byte, deleted bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if deleted {
		delete(r.members, key)
		return
	}
	m := &metadatav1.Member{}
	if err := proto.Unmarshal(value, m); err == nil {
		r.members[key] = m
	}
}

func (r *roleResolver) addresses(role string) []resolver.Address {
	r.mu.Lock()
	defer r.mu.Unlock()
	if slices.Contains(r.self.GetRoles(), role) {
		return []resolver.Address{{Addr: r.self.GetInternalGrpcAddress()}}
	}
	var out []resolver.Address
	for _, m := range r.members {
		if slices.Contains(m.GetRoles(), role) {
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
	if len(addrs) == 0 {
		c.cc.ReportError(errNoMember(c.role))
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
