// Package server assembles a dmsd process: its components (etcd, listeners,
// membership, the catalog cache and the roles chosen by -target) run as
// modules in dependency order (modules.go), serve on one public gRPC
// listener, one internal gRPC listener for the other dmsd processes and one
// HTTP listener, and announce themselves in etcd. It is used by cmd/dmsd
// and, in-process, by the tests.
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	"github.com/opendms/dms/services/audit"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/identity"
	"github.com/opendms/dms/services/ingest"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/scheduler"
	"github.com/opendms/dms/services/server/modules"
	"github.com/opendms/dms/services/storage"
	"github.com/opendms/dms/services/telemetry"
	"github.com/opendms/dms/services/tlsreload"
)

// maxMessageBytes bounds gRPC messages: an 8 MiB batch plus framing.
const maxMessageBytes = 16 << 20

// Server is one dmsd process.
type Server struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time
	order  []string // the modules to run, in start order

	// Addresses the process actually listens on (ports resolved), and its
	// node name.
	GRPCAddr         string
	HTTPAddr         string
	InternalGRPCAddr string
	EtcdEndpoint     string
	NodeName         string
	// KafkaAddr is where the Kafka listener listens; empty when disabled.
	KafkaAddr string
	// AMQPAddr is where the AMQP listener listens; empty when disabled.
	AMQPAddr string

	ctx     context.Context
	cancel  context.CancelFunc
	ready   atomic.Bool
	running *modules.Running

	// What the modules build, in start order.
	dataDirLock  *os.File
	etcd         *embed.Etcd
	cli          *clientv3.Client
	session      *nodeSession
	clusterInfo  *metadatav1.ClusterInfo
	placement    *placement.Cache
	tel          *telemetry.Telemetry
	messaging    *telemetry.Messaging // the domain counters
	publicGRPC   *grpc.Server
	internalGRPC *grpc.Server
	mux          *http.ServeMux
	// TLS of the public and internal listeners (tls.go); nil serves clear
	// text. clusterSecrets are the SHA-256 sums of the secrets the internal
	// listener accepts, clusterSecretSent the one this node sends.
	tls               *tlsreload.Source
	internalTLS       *tlsreload.Source
	clusterSecrets    [][sha256.Size]byte
	clusterSecretSent string
	httpSrv           *http.Server
	listeners         struct{ public, internal, http net.Listener }
	self              *metadatav1.Member
	resolver          *roleResolver
	connsMu           sync.Mutex
	conns             map[string]*grpc.ClientConn
	cache             *catalog.Cache

	// Identities and authentication (auth.go).
	identityCache *identity.Cache
	identityStore *identity.Store
	dataKeys      *datakeys.Manager
	authn         *identity.Authenticator
	audit         *audit.Trail

	// Handlers of roles in this process, called in-process by the others.
	storageHandler *storage.Handler
	storageEngine  *storage.Engine
	ingestHandler  *ingest.Handler
	deliveryEngine *delivery.Engine
	scheduler      *scheduler.Engine
}

// New returns a server for cfg; Start runs it.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, logger: logger, now: time.Now, conns: map[string]*grpc.ClientConn{}}
	order, err := s.moduleManager().Resolve(cfg.Target)
	if err != nil {
		return nil, err
	}
	s.order = order
	return s, nil
}

// SetClock replaces the clock the roles use for deadlines and timestamps;
// tests call it before Start.
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// Roles returns the roles (user-visible modules) the process runs.
func (s *Server) Roles() []string {
	var out []string
	for _, name := range s.order {
		if isRole(name) {
			out = append(out, name)
		}
	}
	return out
}

// Start brings the process up and returns once every module runs and the
// listeners serve. On error whatever was started is stopped again.
func (s *Server) Start(ctx context.Context) (err error) {
	began := time.Now()
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := s.checkListenAddrs(); err != nil {
		return err
	}
	if err := os.MkdirAll(s.cfg.Node.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if s.running, err = s.moduleManager().Start(s.ctx, s.order); err != nil {
		return err
	}
	s.serve()
	if err := s.announce(); err != nil {
		return err
	}
	s.awaitShards()
	s.ready.Store(true)
	s.logger.Info("dmsd ready", "node", s.NodeName, "roles", strings.Join(s.Roles(), ","), "grpc", s.GRPCAddr, "internal_grpc", s.InternalGRPCAddr,
		"http", s.HTTPAddr, "kafka", s.KafkaAddr, "amqp", s.AMQPAddr, "etcd", s.EtcdEndpoint, "data_dir", s.cfg.Node.DataDir,
		"tls", s.tls != nil, "internal_auth", s.internalAuth(), "startup", time.Since(began).Round(time.Millisecond))
	return nil
}

// serve starts serving on the listeners, once every module registered its
// services and routes.
func (s *Server) serve() {
	for _, srv := range []struct {
		g   *grpc.Server
		lis net.Listener
	}{{s.publicGRPC, s.listeners.public}, {s.internalGRPC, s.listeners.internal}} {
		go func() {
			if err := srv.g.Serve(srv.lis); err != nil {
				s.logger.Error("grpc server stopped", "addr", srv.lis.Addr().String(), "err", err)
			}
		}()
	}
	// Failed handshakes (a scanner, a client without a certificate) are
	// the client's business: debug level, not the process's stderr.
	s.httpSrv = &http.Server{Handler: stripNodeHeaders(s.authHTTP(s.mux)), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(s.logger.Handler(), slog.LevelDebug)}
	serveHTTP := s.httpSrv.Serve
	if s.tls != nil {
		s.httpSrv.TLSConfig = s.tls.ServerConfig("h2", "http/1.1")
		serveHTTP = func(lis net.Listener) error { return s.httpSrv.ServeTLS(lis, "", "") }
	}
	go func() {
		if err := serveHTTP(s.listeners.http); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http server stopped", "err", err)
		}
	}()
}

// shardWait bounds how long a starting node waits for the delivery and
// scheduler shards to be placed.
const shardWait = 15 * time.Second

// awaitShards waits, when the cluster has the nodes to place and own them,
// until every delivery and scheduler shard has a live owner, so that a node
// that says it is ready can serve consumers at once. A cluster still
// missing nodes starts serving what it can.
func (s *Server) awaitShards() {
	deadline := time.NewTimer(shardWait)
	defer deadline.Stop()
	for {
		changed := s.placement.Changed()
		if s.shardsSettled() {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			s.logger.Warn("starting before every delivery and scheduler shard has a live owner")
			return
		case <-s.ctx.Done():
			return
		}
	}
}

// shardsSettled reports whether every shard that can have a live owner
// has one.
func (s *Server) shardsSettled() bool {
	info := s.placement.Info()
	storageNodes, owners := 0, map[string]bool{}
	for _, n := range s.placement.Nodes() {
		if n.Has(RoleStorage) {
			storageNodes++
		}
		for _, role := range []string{RoleDelivery, RoleScheduler} {
			owners[role] = owners[role] || n.Has(role)
		}
	}
	if storageNodes < s.cfg.Storage.ReplicationFactor {
		return true // the shards cannot be placed yet
	}
	for _, shards := range []struct {
		kind storagev1.UnitKind
		n    int32
		role string
	}{{storagev1.UnitKind_UNIT_KIND_DELIVERY_SHARD, info.GetDeliveryShards(), RoleDelivery}, {storagev1.UnitKind_UNIT_KIND_SCHEDULER_SHARD, info.GetSchedulerShards(), RoleScheduler}} {
		if !owners[shards.role] {
			continue
		}
		for shard := range shards.n {
			st, ok := s.placement.Unit(&storagev1.UnitId{Kind: shards.kind, Shard: shard})
			if !ok || st.GetOwner() == "" || !s.placement.Alive(st.GetOwner()) {
				return false
			}
		}
	}
	return true
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// readyz answers 200 once the node has joined the cluster and caught up:
// it has started (as /healthz), is not stopping, and is in the in-sync
// replicas of every partition and shard it keeps a copy of whose leader is
// alive. A node back from a restart is not ready until its followers have
// caught up, so that an orchestrator that waits for readiness before it
// stops the next node (a StatefulSet's rolling update, the rolling upgrade
// in the README) never takes a second in-sync copy away. 503 lists what it
// still waits for.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "starting or stopping", http.StatusServiceUnavailable)
		return
	}
	if lagging := laggingUnits(s.placement.Units(), s.NodeName, s.placement.Alive); len(lagging) > 0 {
		const shown = 5
		more := ""
		if len(lagging) > shown {
			more = fmt.Sprintf(" and %d more", len(lagging)-shown)
			lagging = lagging[:shown]
		}
		http.Error(w, fmt.Sprintf("catching up: not in sync on %s%s", strings.Join(lagging, ", "), more), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// laggingUnits returns the units that node keeps a copy of but is not in
// sync on, while their leader is alive (without one nothing can catch up,
// and readiness must not wait for it).
func laggingUnits(units []placement.State, node string, alive func(string) bool) []string {
	var lagging []string
	for _, u := range units {
		if !slices.Contains(u.GetReplicas(), node) || slices.Contains(u.GetIsr(), node) {
			continue
		}
		if u.GetLeader() == "" || !alive(u.GetLeader()) {
			continue
		}
		lagging = append(lagging, placement.UnitKey(u.GetUnit()))
	}
	slices.Sort(lagging)
	return lagging
}

// Stop shuts the process down: the listeners first, so that no request is
// mid-flight when the roles stop, then the modules in reverse order of
// their start (the scheduler finishes the batch it releases while ingest
// and storage still run; etcd goes last).
func (s *Server) Stop() {
	s.ready.Store(false)
	if s.storageEngine != nil {
		s.storageEngine.Relinquish()
	}
	s.withdraw()
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	var wg sync.WaitGroup
	for _, g := range []*grpc.Server{s.publicGRPC, s.internalGRPC} {
		if g == nil {
			continue
		}
		wg.Go(func() {
			done := make(chan struct{})
			go func() { g.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				g.Stop()
			}
		})
	}
	wg.Wait()
	if s.cancel != nil {
		s.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = s.running.Stop(ctx)
}
