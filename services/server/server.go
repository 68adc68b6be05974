// Package server assembles a dmsd process: etcd (embedded or external), one
// gRPC and one HTTP listener shared by every role, the roles chosen by
// -target wired in dependency order, registration in etcd, telemetry. It is
// used by cmd/dmsd and, in-process, by the tests.
package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/delivery/v1"
	ingestv1 "github.com/opendms/dms/gen/go/dms/ingest/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/metadata/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/gateway"
	"github.com/opendms/dms/services/ingest"
	"github.com/opendms/dms/services/metadata"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/scheduler"
	"github.com/opendms/dms/services/storage"
	"github.com/opendms/dms/services/telemetry"
)

// maxMessageBytes bounds gRPC messages: an 8 MiB batch plus framing.
const maxMessageBytes = 16 << 20

// Server is one dmsd process.
type Server struct {
	cfg    Config
	logger *slog.Logger
	now    func() time.Time
	roles  []string

	// Addresses the process actually listens on (ports resolved).
	GRPCAddr     string
	HTTPAddr     string
	EtcdEndpoint string

	ctx       context.Context
	cancel    context.CancelFunc
	ready     atomic.Bool
	etcd      *embed.Etcd
	cli       *clientv3.Client
	session   *concurrency.Session
	tel       *telemetry.Telemetry
	grpcSrv   *grpc.Server
	httpSrv   *http.Server
	resolver  *roleResolver
	conns     []*grpc.ClientConn
	cache     *catalog.Cache
	storage   *storage.Engine
	scheduler *scheduler.Engine
}

// New returns a server for cfg; Start runs it.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	roles, err := parseTarget(cfg.Target)
	if err != nil {
		return nil, err
	}
	return &Server{cfg: cfg, logger: logger, now: time.Now, roles: roles}, nil
}

// SetClock replaces the clock the roles use for deadlines and timestamps;
// tests call it before Start.
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// Start brings the process up and returns once every role serves. On error
// whatever was started is stopped again.
func (s *Server) Start(ctx context.Context) (err error) {
	began := time.Now()
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := os.MkdirAll(s.cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if s.tel, err = telemetry.New(ctx, "dmsd"); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	if err := s.startEtcd(); err != nil {
		return err
	}
	grpcLis, err := net.Listen("tcp", s.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	httpLis, err := net.Listen("tcp", s.cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	s.GRPCAddr, s.HTTPAddr = grpcLis.Addr().String(), httpLis.Addr().String()

	memberID := catalog.NewQueueID()
	self := &metadatav1.Member{Id: memberID, Roles: s.roles, GrpcAddress: s.GRPCAddr, HttpAddress: s.HTTPAddr, StartTimeMs: began.UnixMilli()}
	s.resolver = newRoleResolver(s.cli, self, s.logger)
	if err := s.resolver.start(s.ctx); err != nil {
		return fmt.Errorf("member registry: %w", err)
	}
	s.cache = catalog.NewCache(s.cli, s.logger.With("component", "catalog"))
	if err := s.cache.Start(s.ctx); err != nil {
		return err
	}

	s.grpcSrv = grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(s.otelOptions()...)),
		grpc.ChainUnaryInterceptor(rpcstatus.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(rpcstatus.StreamServerInterceptor()),
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
	)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /metrics", s.tel.MetricsHandler())
	// Profiles on demand: how a slow server is diagnosed in place.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	if err := s.startRoles(mux, memberID); err != nil {
		return err
	}

	go func() {
		if err := s.grpcSrv.Serve(grpcLis); err != nil {
			s.logger.Error("grpc server stopped", "err", err)
		}
	}()
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("http server stopped", "err", err)
		}
	}()
	if err := s.register(self); err != nil {
		return err
	}
	s.ready.Store(true)
	s.logger.Info("dmsd ready", "roles", strings.Join(s.roles, ","), "grpc", s.GRPCAddr, "http", s.HTTPAddr,
		"etcd", s.EtcdEndpoint, "data_dir", s.cfg.DataDir, "startup", time.Since(began).Round(time.Millisecond))
	return nil
}

func (s *Server) otelOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(s.tel.TracerProvider),
		otelgrpc.WithMeterProvider(s.tel.MeterProvider),
		otelgrpc.WithPropagators(s.tel.Propagator),
	}
}

// startEtcd starts the embedded etcd unless external endpoints are given,
// then opens the client and the process's session lease.
func (s *Server) startEtcd() error {
	endpoints := strings.Split(s.cfg.Etcd.Endpoints, ",")
	if s.cfg.Etcd.Endpoints == "" {
		ecfg := embed.NewConfig()
		ecfg.Name = "dmsd"
		ecfg.Dir = filepath.Join(s.cfg.DataDir, "etcd")
		ecfg.LogLevel = "error"
		ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		clientURL := url.URL{Scheme: "http", Host: s.cfg.Etcd.EmbedClientAddr}
		peerURL := url.URL{Scheme: "http", Host: s.cfg.Etcd.EmbedPeerAddr}
		ecfg.ListenClientUrls, ecfg.AdvertiseClientUrls = []url.URL{clientURL}, []url.URL{clientURL}
		ecfg.ListenPeerUrls, ecfg.AdvertisePeerUrls = []url.URL{peerURL}, []url.URL{peerURL}
		ecfg.InitialCluster = ecfg.Name + "=" + peerURL.String()
		e, err := embed.StartEtcd(ecfg)
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		s.etcd = e
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			return fmt.Errorf("embedded etcd: %w", err)
		case <-time.After(60 * time.Second):
			return errors.New("embedded etcd: not ready after 60s")
		}
		endpoints = []string{e.Clients[0].Addr().String()}
	}
	s.EtcdEndpoint = strings.Join(endpoints, ",")
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	s.cli = cli
	if s.session, err = concurrency.NewSession(cli, concurrency.WithTTL(10)); err != nil {
		return fmt.Errorf("etcd session: %w", err)
	}
	return nil
}

// conn returns a connection to whichever process runs role.
func (s *Server) conn(role string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(roleScheme+":///"+role,
		grpc.WithResolvers(s.resolver),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(s.otelOptions()...)),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)),
	)
	if err != nil {
		return nil, fmt.Errorf("connection to %s role: %w", role, err)
	}
	s.conns = append(s.conns, cc)
	return cc, nil
}

// startRoles creates each role's engine and registers its services.
func (s *Server) startRoles(mux *http.ServeMux, memberID string) error {
	conns := map[string]*grpc.ClientConn{}
	for _, role := range []string{RoleStorage, RoleMetadata, RoleIngest, RoleDelivery, RoleScheduler} {
		cc, err := s.conn(role)
		if err != nil {
			return err
		}
		conns[role] = cc
	}
	// Roles sharing a process with storage call it in-process (same
	// contract, no serialization); others reach it over gRPC.
	storageClient := storagev1.NewStorageServiceClient(conns[RoleStorage])
	ingestClient := ingestv1.NewIngestServiceClient(conns[RoleIngest])
	schedulerClient := schedulerv1.NewSchedulerServiceClient(conns[RoleScheduler])
	for _, role := range s.roles {
		roleLogger := s.logger.With("role", role)
		switch role {
		case RoleStorage:
			cfg := s.cfg.Storage
			cfg.Dir = filepath.Join(s.cfg.DataDir, "storage")
			engine, err := storage.NewEngine(cfg, s.cache, s.now, roleLogger)
			if err != nil {
				return err
			}
			engine.Start(s.ctx)
			s.storage = engine
			h := storage.NewHandler(engine)
			storagev1.RegisterStorageServiceServer(s.grpcSrv, h)
			storageClient = storage.LocalClient(h)
		case RoleMetadata:
			engine := metadata.NewEngine(s.cfg.Metadata, s.cli, s.cache, s.now, roleLogger)
			h := metadata.NewHandler(engine, s.cache, s.cli, storageClient, deliveryv1.NewDeliveryServiceClient(conns[RoleDelivery]), schedulerClient, roleLogger)
			dmsv1.RegisterQueueServiceServer(s.grpcSrv, h)
			metadatav1.RegisterMetadataServiceServer(s.grpcSrv, h)
		case RoleIngest:
			h := ingest.NewHandler(ingest.NewEngine(storageClient, schedulerClient, s.now), s.cache)
			dmsv1.RegisterProducerServiceServer(s.grpcSrv, h)
			ingestv1.RegisterIngestServiceServer(s.grpcSrv, h)
			ingestClient = ingest.LocalClient(h)
		case RoleDelivery:
			key, err := s.receiptKey()
			if err != nil {
				return err
			}
			h := delivery.NewHandler(delivery.NewEngine(s.cfg.Delivery, storageClient, s.cache, key, s.now, roleLogger), s.cache)
			dmsv1.RegisterConsumerServiceServer(s.grpcSrv, h)
			deliveryv1.RegisterDeliveryServiceServer(s.grpcSrv, h)
		case RoleScheduler:
			s.scheduler = scheduler.New(s.cfg.Scheduler, s.session, memberID, storageClient, ingestClient, s.cache, s.now, roleLogger)
			s.scheduler.Start(s.ctx)
			schedulerv1.RegisterSchedulerServiceServer(s.grpcSrv, scheduler.NewHandler(s.scheduler))
		case RoleGateway:
			err := gateway.Register(s.ctx, mux, gateway.Conns{Metadata: conns[RoleMetadata], Ingest: conns[RoleIngest], Delivery: conns[RoleDelivery]},
				gateway.Config{MaxQueuesPerProject: s.cfg.Metadata.MaxQueuesPerProject}, roleLogger)
			if err != nil {
				return fmt.Errorf("gateway: %w", err)
			}
		}
	}
	return nil
}

// receiptKey returns the cluster's receipt-signing key, creating it once.
func (s *Server) receiptKey() ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	resp, err := s.cli.Txn(s.ctx).
		If(clientv3.Compare(clientv3.CreateRevision(catalog.ReceiptKeyKey), "=", 0)).
		Then(clientv3.OpPut(catalog.ReceiptKeyKey, string(key))).
		Else(clientv3.OpGet(catalog.ReceiptKeyKey)).Commit()
	if err != nil {
		return nil, fmt.Errorf("receipt key: %w", err)
	}
	if !resp.Succeeded {
		key = resp.Responses[0].GetResponseRange().Kvs[0].Value
	}
	return key, nil
}

// register announces the process and its roles under its session lease.
func (s *Server) register(self *metadatav1.Member) error {
	value, err := proto.Marshal(self)
	if err != nil {
		return err
	}
	_, err = s.cli.Put(s.ctx, catalog.MembersPrefix+self.GetId(), string(value), clientv3.WithLease(s.session.Lease()))
	if err != nil {
		return fmt.Errorf("member registration: %w", err)
	}
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		http.Error(w, "starting", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// Stop shuts the process down in reverse order: listeners first so that no
// request is mid-flight when the logs close, etcd last.
func (s *Server) Stop() {
	s.ready.Store(false)
	// The scheduler finishes the batch it is releasing while ingest and
	// storage still serve, and hands its shards to a standby.
	if s.scheduler != nil {
		s.scheduler.Stop()
	}
	if s.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = s.httpSrv.Shutdown(ctx)
		cancel()
	}
	if s.grpcSrv != nil {
		done := make(chan struct{})
		go func() { s.grpcSrv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			s.grpcSrv.Stop()
		}
	}
	if s.cancel != nil {
		s.cancel()
	}
	for _, cc := range s.conns {
		_ = cc.Close()
	}
	if s.resolver != nil {
		s.resolver.stop()
	}
	if s.storage != nil {
		if err := s.storage.Close(); err != nil {
			s.logger.Error("closing storage", "err", err)
		}
	}
	if s.session != nil {
		_ = s.session.Close()
	}
	if s.cli != nil {
		_ = s.cli.Close()
	}
	if s.etcd != nil {
		s.etcd.Close()
	}
	if s.tel != nil {
		_ = s.tel.Shutdown(context.Background())
	}
}
