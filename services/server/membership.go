package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/server/modules"
)

// nodeNameFile keeps the node's name in its data directory, so that a
// restart is the same node whatever the host is called now.
const nodeNameFile = "node-name"

var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// initNode locks the data directory and settles the node's name.
func (s *Server) initNode(context.Context) (modules.Stopper, error) {
	lock, err := lockDataDir(s.cfg.Node.DataDir)
	if err != nil {
		return nil, err
	}
	s.dataDirLock = lock
	stop := modules.StopFunc(func(context.Context) error { return lock.Close() })
	if s.NodeName, err = nodeName(s.cfg.Node); err != nil {
		_ = stop(context.Background())
		return nil, err
	}
	return stop, nil
}

// initMembership joins the cluster (or creates it), follows the member
// registry and the placement, and gives the other modules connections to
// the roles.
func (s *Server) initMembership(ctx context.Context) (modules.Stopper, error) {
	info, err := joinCluster(ctx, s.cli, s.cfg.Node.DataDir, s.newClusterInfo())
	if err != nil {
		return nil, err
	}
	s.clusterInfo = info
	if err := s.loadClusterSecret(ctx); err != nil {
		return nil, err
	}
	if err := s.takeOverRegistration(ctx); err != nil {
		return nil, err
	}
	s.placement = placement.NewCache(s.cli, s.logger.With("component", "placement"))
	if err := s.placement.Start(ctx); err != nil {
		return nil, err
	}
	s.self = &metadatav1.Member{
		Id: uuid.NewString(), Node: s.NodeName, Zone: s.cfg.Node.Zone, Roles: s.Roles(),
		GrpcAddress: s.GRPCAddr, InternalGrpcAddress: cmp.Or(s.cfg.Server.InternalAdvertiseAddr, s.InternalGRPCAddr), HttpAddress: s.HTTPAddr, StartTimeMs: s.now().UnixMilli(),
	}
	s.session.OnRenew(func(*concurrency.Session) {
		if err := s.announce(); err != nil {
			s.logger.Error("registering again after the etcd session was renewed", "err", err)
		}
	})
	s.resolver = newRoleResolver(s.placement, s.self, s.InternalGRPCAddr)
	s.resolver.start(ctx)
	return modules.StopFunc(func(context.Context) error {
		s.connsMu.Lock()
		for _, cc := range s.conns {
			_ = cc.Close()
		}
		s.conns = map[string]*grpc.ClientConn{}
		s.connsMu.Unlock()
		s.resolver.stop()
		return nil
	}), nil
}

// nodeName returns the node's name: the one kept in the data directory, or
// the one configured (kept from then on), or the host name. A configured
// name that differs from the kept one is refused: the data belongs to
// another node.
func nodeName(cfg NodeConfig) (string, error) {
	path := filepath.Join(cfg.DataDir, nodeNameFile)
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		kept := strings.TrimSpace(string(data))
		if cfg.Name != "" && cfg.Name != kept {
			return "", fmt.Errorf("node name: the data directory %s belongs to node %q, not %q; start it as %q or give another data directory", cfg.DataDir, kept, cfg.Name, kept)
		}
		return kept, nil
	case !errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("node name: %w", err)
	}
	name := cfg.Name
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("node name: no -node.name given and no host name: %w", err)
		}
	}
	if !nodeNamePattern.MatchString(name) {
		return "", fmt.Errorf("node name %q: use 1 to 63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("node name: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("node name: %w", err)
	}
	return name, nil
}

// roleConn returns the connection to whichever process runs role, over
// its internal listener; this process itself when it runs the role.
func (s *Server) roleConn(role string) *grpc.ClientConn {
	return s.internalConn(roleScheme + ":///" + role)
}

// nodeConn returns the connection to a node's internal listener.
func (s *Server) nodeConn(node string) *grpc.ClientConn {
	return s.internalConn(nodeScheme + ":///" + node)
}

// internalConn returns the connection to a target of the role or node
// resolver, made once.
func (s *Server) internalConn(target string) *grpc.ClientConn {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if cc := s.conns[target]; cc != nil {
		return cc
	}
	cc, err := grpc.NewClient(target, append(s.InternalDialOptions(),
		grpc.WithResolvers(s.resolver, nodeResolver{s.resolver}),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(s.otelOptions()...)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	)...)
	if err != nil {
		// NewClient fails only on a malformed target or options, which are
		// fixed here.
		panic(fmt.Sprintf("connection to %s: %v", target, err))
	}
	s.conns[target] = cc
	return cc
}

// announce registers the process under its node name and session lease,
// once it serves.
func (s *Server) announce() error {
	value, err := proto.Marshal(s.self)
	if err != nil {
		return err
	}
	resp, err := s.cli.Put(s.ctx, placement.MemberKey(s.self.GetNode()), string(value), clientv3.WithLease(s.session.Lease()))
	if err != nil {
		return fmt.Errorf("member registration: %w", err)
	}
	// Placement decisions made here right after (a queue created at once)
	// must count this node.
	return s.placement.WaitForRevision(s.ctx, resp.Header.Revision)
}

// withdraw removes the registration of this run of the process, so that
// the others stop routing to it before it stops serving.
func (s *Server) withdraw() {
	if s.self == nil || s.cli == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	key := placement.MemberKey(s.self.GetNode())
	_, _ = s.cli.Txn(ctx).If(clientv3.Compare(clientv3.LeaseValue(key), "=", s.session.Lease())).Then(clientv3.OpDelete(key)).Commit()
}
