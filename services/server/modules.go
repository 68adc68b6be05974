package server

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"slices"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"

	deliveryv1 "github.com/opendms/dms/gen/go/dms/cluster/delivery/v1"
	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	schedulerv1 "github.com/opendms/dms/gen/go/dms/cluster/scheduler/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/amqp"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/datakeys"
	"github.com/opendms/dms/services/delivery"
	"github.com/opendms/dms/services/gateway"
	"github.com/opendms/dms/services/identity"
	"github.com/opendms/dms/services/ingest"
	"github.com/opendms/dms/services/kafka"
	"github.com/opendms/dms/services/metadata"
	"github.com/opendms/dms/services/msgtrace"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/scheduler"
	"github.com/opendms/dms/services/server/modules"
	"github.com/opendms/dms/services/storage"
	"github.com/opendms/dms/services/telemetry"
)

// The modules of a dmsd process. The roles are the user-visible ones, the
// values of -target; the others are what the roles stand on.
const (
	moduleNode       = "node"       // the data directory's lock and the node's name
	moduleEtcd       = "etcd"       // embedded etcd or the client of an external one, and the session lease
	moduleServer     = "server"     // telemetry and the three listeners
	moduleMembership = "membership" // the cluster's identity, the member registry, the placement cache, connections to other roles
	moduleCatalog    = "catalog"    // the watch-fed catalog cache
	moduleIdentity   = "identity"   // the watch-fed identity cache, the authenticator, the first identities
	moduleAudit      = "audit"      // the audit trail's writer and API
	moduleDataKeys   = "datakeys"   // the projects' data keys, for encryption at rest

	RoleStorage   = "storage"
	RoleMetadata  = "metadata"
	RoleIngest    = "ingest"
	RoleDelivery  = "delivery"
	RoleScheduler = "scheduler"
	RoleGateway   = "gateway"
	RoleKafka     = "kafka"
	RoleAMQP      = "amqp"
)

// moduleManager registers every module with what it needs. A role lists the
// roles it calls under After: when they share the process it calls them
// in-process, which needs them built first; otherwise it reaches them over
// the internal listener. Adding a protocol front end or a role is one
// Register call here.
func (s *Server) moduleManager() *modules.Manager {
	m := modules.New(s.logger)
	m.Register(moduleNode, s.initNode)
	m.Register(moduleEtcd, s.initEtcd, modules.DependsOn(moduleNode))
	m.Register(moduleServer, s.initServer)
	m.Register(moduleMembership, s.initMembership, modules.DependsOn(moduleEtcd, moduleServer))
	m.Register(moduleCatalog, s.initCatalog, modules.DependsOn(moduleEtcd))
	m.Register(moduleIdentity, s.initIdentity, modules.DependsOn(moduleEtcd, moduleCatalog))

	m.Register(moduleAudit, s.initAudit, modules.DependsOn(moduleServer, moduleMembership))

	m.Register(moduleDataKeys, s.initDataKeys, modules.DependsOn(moduleEtcd))

	roleDeps := modules.DependsOn(moduleServer, moduleMembership, moduleCatalog, moduleIdentity, moduleAudit, moduleDataKeys)
	m.Register(RoleStorage, s.initStorage, roleDeps,
		modules.UserVisible("keeps the logs: queue partitions and the other roles' state"))
	m.Register(RoleScheduler, s.initScheduler, roleDeps, modules.After(RoleStorage, RoleIngest),
		modules.UserVisible("holds delayed and scheduled messages until they are due"))
	m.Register(RoleIngest, s.initIngest, roleDeps, modules.After(RoleStorage),
		modules.UserVisible("the producers' front door: validates and stores messages"))
	m.Register(RoleDelivery, s.initDelivery, roleDeps, modules.After(RoleStorage),
		modules.UserVisible("the consumers' front door: receives, acks, dead letters, rewind"))
	m.Register(RoleMetadata, s.initMetadata, roleDeps, modules.After(RoleStorage, RoleDelivery, RoleScheduler),
		modules.UserVisible("the admin API and the catalog of queues and groups"))
	m.Register(RoleGateway, s.initGateway, modules.DependsOn(moduleServer, moduleMembership, moduleIdentity, moduleAudit), modules.After(RoleMetadata, RoleIngest, RoleDelivery),
		modules.UserVisible("the REST APIs: native (grpc-gateway) and DMS v1.0"))
	m.Register(RoleKafka, s.initKafka, roleDeps, modules.After(RoleStorage, RoleMetadata, RoleIngest, RoleDelivery),
		modules.UserVisible("the Kafka protocol listener (-kafka.addr): topics are the project's KAFKA_HA and KAFKA_HT queues"))
	m.Register(RoleAMQP, s.initAMQP, roleDeps, modules.DependsOn(RoleDelivery), modules.After(RoleStorage, RoleMetadata, RoleIngest),
		modules.UserVisible("the AMQP 0-9-1 listener (-amqp.addr): RabbitMQ clients over the project's queues"))
	m.RegisterGroup("all", RoleStorage, RoleMetadata, RoleIngest, RoleDelivery, RoleScheduler, RoleGateway, RoleKafka, RoleAMQP)
	return m
}

// KnownTargets lists the values -target takes.
func KnownTargets() []string { return (&Server{}).moduleManager().Targets() }

func isRole(name string) bool {
	return slices.Contains([]string{RoleStorage, RoleMetadata, RoleIngest, RoleDelivery, RoleScheduler, RoleGateway, RoleKafka, RoleAMQP}, name)
}

// initServer opens the listeners and builds the gRPC and HTTP servers; they
// serve once every module has registered (Server.serve).
func (s *Server) initServer(ctx context.Context) (modules.Stopper, error) {
	tel, err := telemetry.New(ctx, "dmsd")
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	s.tel = tel
	if s.messaging, err = telemetry.NewMessaging(tel.MeterProvider, s.cfg.Telemetry.QueueLabels); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	if err := s.loadTLS(); err != nil {
		_ = tel.Shutdown(ctx)
		return nil, err
	}
	listen := func(name, addr string) (net.Listener, error) {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("%s listener: %w", name, err)
		}
		return lis, nil
	}
	stop := modules.StopFunc(func(ctx context.Context) error {
		for _, lis := range []net.Listener{s.listeners.public, s.listeners.internal, s.listeners.http} {
			if lis != nil {
				_ = lis.Close()
			}
		}
		return s.tel.Shutdown(ctx)
	})
	var errs error
	if s.listeners.public, errs = listen("grpc", s.cfg.Server.GRPCAddr); errs == nil {
		if s.listeners.internal, errs = listen("internal grpc", s.cfg.Server.InternalGRPCAddr); errs == nil {
			s.listeners.http, errs = listen("http", s.cfg.Server.HTTPAddr)
		}
	}
	if errs != nil {
		_ = stop(ctx)
		return nil, errs
	}
	s.GRPCAddr, s.InternalGRPCAddr, s.HTTPAddr = s.listeners.public.Addr().String(), s.listeners.internal.Addr().String(), s.listeners.http.Addr().String()
	s.publicGRPC, s.internalGRPC = s.newGRPCServer(true), s.newGRPCServer(false)
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.tel.MetricsHandler())
	// Profiles on demand: how a slow server is diagnosed in place.
	s.mux.HandleFunc("/debug/pprof/", pprof.Index)
	s.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	s.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return stop, nil
}

func (s *Server) newGRPCServer(public bool) *grpc.Server {
	edge := rpcstatus.NewServerEdge()
	forwardUnary, forwardStream := s.forwardInterceptors(public)
	unary := []grpc.UnaryServerInterceptor{edge.UnaryServerInterceptor(), s.auditUnary(public), s.authUnary(public), forwardUnary}
	stream := []grpc.StreamServerInterceptor{edge.StreamServerInterceptor(), s.auditStream(public), s.authStream(public), forwardStream}
	if !public {
		// Inside the audit interceptor, which records the refusals.
		unary = slices.Insert(unary, 2, s.clusterUnary)
		stream = slices.Insert(stream, 2, s.clusterStream)
	}
	return grpc.NewServer(
		s.grpcServerCreds(public),
		grpc.StatsHandler(otelgrpc.NewServerHandler(s.otelOptions()...)),
		grpc.ForceServerCodecV2(edge.Codec()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(maxMessageBytes),
		grpc.MaxSendMsgSize(maxMessageBytes),
	)
}

func (s *Server) otelOptions() []otelgrpc.Option {
	return []otelgrpc.Option{
		otelgrpc.WithTracerProvider(s.tel.TracerProvider),
		otelgrpc.WithMeterProvider(s.tel.MeterProvider),
		otelgrpc.WithPropagators(s.tel.Propagator),
	}
}

// registerPublic registers a public service on the public listener and on
// the internal one, where other dmsd processes (the gateway of another
// node, say) reach it.
func (s *Server) registerPublic(register func(grpc.ServiceRegistrar)) {
	register(s.publicGRPC)
	register(s.internalGRPC)
}

func (s *Server) initCatalog(ctx context.Context) (modules.Stopper, error) {
	s.cache = catalog.NewCache(s.cli, s.logger.With("component", "catalog"))
	s.cache.Subscribe(func(ev catalog.Event) {
		if ev.Kind == catalog.QueueDeleted {
			s.messaging.Forget(ev.QueueID)
		}
	})
	// The cache's watch ends with the process context.
	return nil, s.cache.Start(ctx)
}

// initDataKeys loads the master keys (nil: encryption at rest is off) and
// keeps the projects' data keys. Storage seals with them; the metadata
// role rotates and destroys them, which needs the master key too: every
// node of the cluster is given the same key file.
func (s *Server) initDataKeys(ctx context.Context) (modules.Stopper, error) {
	logger := s.logger.With("component", "datakeys")
	ring, err := storage.LoadKeyring(s.cfg.Storage, logger)
	if err != nil {
		return nil, err
	}
	var provider datakeys.KeyProvider
	if ring != nil {
		provider = datakeys.NewMasterKeyProvider(ring)
	}
	s.dataKeys = datakeys.NewManager(s.cli, provider, s.now, logger)
	// The watch ends with the process context.
	return nil, s.dataKeys.Start(ctx)
}

func (s *Server) initStorage(ctx context.Context) (modules.Stopper, error) {
	cfg := s.cfg.Storage
	cfg.Dir = filepath.Join(s.cfg.Node.DataDir, "storage")
	cluster := &storage.Cluster{Node: s.NodeName, Placement: s.placement, Etcd: s.cli, SessionValid: s.session.Valid, Dial: s.storageOn, DataKeys: s.dataKeys}
	engine, err := storage.NewEngine(cfg, s.cache, cluster, s.now, s.logger.With("role", RoleStorage))
	if err != nil {
		return nil, err
	}
	if err := engine.RegisterMetrics(s.tel.MeterProvider, s.messaging); err != nil {
		return nil, err
	}
	if s.audit != nil {
		engine.SetDamageReporter(s.auditDamage)
	}
	engine.Start(ctx)
	s.storageEngine = engine
	s.storageHandler = storage.NewHandler(engine)
	storagev1.RegisterStorageServiceServer(s.internalGRPC, s.storageHandler)
	return modules.StopFunc(func(context.Context) error { return engine.Close() }), nil
}

func (s *Server) initMetadata(ctx context.Context) (modules.Stopper, error) {
	logger := s.logger.With("role", RoleMetadata)
	cfg := s.cfg.Metadata
	cfg.DefaultReplicationFactor, cfg.MinInsyncReplicas = s.cfg.Storage.ReplicationFactor, s.cfg.Storage.MinInsyncReplicas
	engine := metadata.NewEngine(cfg, s.cli, s.cache, s.placement, s.now, logger)
	views := metadata.NewViews(s.cache, s.storageClient(), deliveryRouter{s}, s.schedulerClient(), logger)
	h := metadata.NewHandler(engine, views, s.cache)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterQueueServiceServer(r, h) })
	ch := metadata.NewClusterHandler(engine, views, s.cache)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterClusterServiceServer(r, ch) })
	idh := identity.NewHandler(s.identityStore, s.dataKeys)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterIdentityServiceServer(r, idh) })
	dkh := datakeys.NewHandler(s.dataKeys)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterDataKeyServiceServer(r, dkh) })
	metadatav1.RegisterMetadataServiceServer(s.internalGRPC, h)
	th := msgtrace.NewHandler(msgtrace.NewEngine(s.storageClient(), s.cache, s.placement, s.now))
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterMessageTraceServiceServer(r, th) })
	controller := metadata.NewController(metadata.ControllerConfig{ReplicationFactor: s.cfg.Storage.ReplicationFactor, MinInsync: s.cfg.Storage.MinInsyncReplicas},
		s.cli, s.session.Session, s.placement, s.cache, s.NodeName, s.Roles(), logger.With("component", "controller"))
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { controller.Run(ctx); close(done) }()
	return modules.StopFunc(func(stopCtx context.Context) error {
		cancel()
		select {
		case <-done:
			return nil
		case <-stopCtx.Done():
			return stopCtx.Err()
		}
	}), nil
}

func (s *Server) initIngest(context.Context) (modules.Stopper, error) {
	s.ingestHandler = ingest.NewHandler(ingest.NewEngine(s.storageClient(), s.schedulerClient(), s.now), s.cache)
	s.ingestHandler.RecordProducers(s.cfg.Telemetry.RecordTraces)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterProducerServiceServer(r, s.ingestHandler) })
	ingestv1.RegisterIngestServiceServer(s.internalGRPC, s.ingestHandler)
	return nil, nil
}

func (s *Server) initDelivery(ctx context.Context) (modules.Stopper, error) {
	key, err := receiptKey(ctx, s.cli)
	if err != nil {
		return nil, err
	}
	engine := delivery.NewEngine(s.cfg.Delivery, s.storageClient(), s.cache, ownership{s}, key, s.now, s.logger.With("role", RoleDelivery))
	s.deliveryEngine = engine
	if err := engine.SetMetrics(s.messaging, s.tel.MeterProvider); err != nil {
		return nil, err
	}
	h := delivery.NewHandler(engine, s.cache)
	h.RecordConsumers(s.cfg.Telemetry.RecordTraces)
	s.registerPublic(func(r grpc.ServiceRegistrar) { dmsv1.RegisterConsumerServiceServer(r, h) })
	deliveryv1.RegisterDeliveryServiceServer(s.internalGRPC, h)
	return modules.StopFunc(engine.Stop), nil
}

func (s *Server) initScheduler(ctx context.Context) (modules.Stopper, error) {
	s.scheduler = scheduler.New(s.cfg.Scheduler, ownership{s}, s.cli, s.storageClient(), s.ingestClient(), s.cache, s.now, s.logger.With("role", RoleScheduler))
	if err := s.scheduler.RegisterMetrics(s.tel.MeterProvider, s.messaging); err != nil {
		return nil, err
	}
	s.scheduler.Start(ctx)
	schedulerv1.RegisterSchedulerServiceServer(s.internalGRPC, scheduler.NewHandler(s.scheduler))
	return modules.StopFunc(func(context.Context) error { s.scheduler.Stop(); return nil }), nil
}

func (s *Server) initGateway(ctx context.Context) (modules.Stopper, error) {
	err := gateway.Register(ctx, s.mux, gateway.Conns{Metadata: s.roleConn(RoleMetadata), Ingest: s.roleConn(RoleIngest), Delivery: s.roleConn(RoleDelivery)},
		gateway.Config{MaxQueuesPerProject: s.cfg.Metadata.MaxQueuesPerProject, AuthEnabled: s.cfg.Auth.Enabled}, s.logger.With("role", RoleGateway))
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	return nil, nil
}

// initKafka opens the Kafka listener, unless -kafka.addr is empty, and
// advertises its address in the member registry.
func (s *Server) initKafka(context.Context) (modules.Stopper, error) {
	cfg := s.cfg.Kafka
	if cfg.Addr == "" {
		s.logger.Info("kafka listener disabled (-kafka.addr is empty)")
		return nil, nil
	}
	cfg.DefaultProject = s.cfg.Protocols.DefaultProject
	deps := kafka.Deps{
		Node: s.NodeName, Catalog: s.cache, Placement: s.placement, Storage: s.storageClient(),
		Queues: dmsv1.NewQueueServiceClient(s.roleConn(RoleMetadata)), Consumer: dmsv1.NewConsumerServiceClient(s.roleConn(RoleDelivery)), Etcd: s.cli,
		Quotas: s.quotas(),
	}
	if s.tls != nil {
		deps.TLS = s.tls.ServerConfig()
	}
	if s.cfg.Auth.Enabled {
		deps.Auth = &kafka.Auth{Authenticator: s.authn, Directory: s.auditingDirectory("kafka")}
	}
	k, err := kafka.New(cfg, deps, s.logger.With("role", RoleKafka))
	if err != nil {
		return nil, err
	}
	if err := k.Listen(); err != nil {
		return nil, err
	}
	s.KafkaAddr = k.Addr()
	s.self.KafkaAddress = k.AdvertisedAddr()
	go k.Serve()
	return modules.StopFunc(k.Close), nil
}

// initAMQP opens the AMQP 0-9-1 listener, unless -amqp.addr is empty. It
// drives the delivery engine of this process (consumers are its push
// sessions), so it runs where the delivery role runs.
func (s *Server) initAMQP(context.Context) (modules.Stopper, error) {
	cfg := s.cfg.AMQP
	if cfg.Addr == "" {
		s.logger.Info("amqp listener disabled (-amqp.addr is empty)")
		return nil, nil
	}
	cfg.DefaultProject = s.cfg.Protocols.DefaultProject
	deps := amqp.Deps{
		Catalog: s.cache, Queues: dmsv1.NewQueueServiceClient(s.roleConn(RoleMetadata)), Ingest: s.ingestClient(),
		Delivery: s.deliveryEngine, Etcd: s.cli,
	}
	if s.tls != nil {
		deps.TLS = s.tls.ServerConfig()
	}
	if s.cfg.Auth.Enabled {
		deps.Auth = &amqp.Auth{Authenticator: s.authn, Directory: s.auditingDirectory("amqp"),
			ProjectByName: s.identityCache.ProjectByName, Refused: s.auditLoginRefused("amqp")}
	}
	a, err := amqp.New(cfg, deps, s.logger.With("role", RoleAMQP))
	if err != nil {
		return nil, err
	}
	if err := a.Listen(); err != nil {
		return nil, err
	}
	s.AMQPAddr = a.Addr()
	go a.Serve()
	return modules.StopFunc(a.Close), nil
}

// quotas returns the send quota check of this process: the ingest role's,
// when it runs here, so that the front ends share a project's buckets.
func (s *Server) quotas() *ingest.Quotas {
	if s.ingestHandler != nil {
		return s.ingestHandler.Quotas()
	}
	return ingest.NewQuotas(s.cache, s.storageClient())
}

// storageClient returns the storage contract for the other roles: each
// call goes to the leader of its log, in-process when that is this node.
func (s *Server) storageClient() storagev1.StorageServiceClient {
	return storage.NewRoutedClient(s.placement, s.storageOn)
}

// storageOn returns the storage role of a node: in-process for this node.
func (s *Server) storageOn(node string) (storagev1.StorageServiceClient, error) {
	if node == s.NodeName {
		if s.storageHandler == nil {
			return nil, fmt.Errorf("node %s does not run the storage role", node)
		}
		return storage.LocalClient(s.storageHandler), nil
	}
	return storagev1.NewStorageServiceClient(s.nodeConn(node)), nil
}

// ingestClient returns the ingest contract, in-process when possible.
func (s *Server) ingestClient() ingestv1.IngestServiceClient {
	if s.ingestHandler != nil {
		return ingest.LocalClient(s.ingestHandler)
	}
	return ingestv1.NewIngestServiceClient(s.roleConn(RoleIngest))
}

// schedulerClient returns the scheduler contract: each call goes to the
// owner of its queue's timer shard.
func (s *Server) schedulerClient() schedulerv1.SchedulerServiceClient {
	return schedulerRouter{s}
}
