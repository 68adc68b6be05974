package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/delivery"
)

// Deps are what the front end calls: it keeps no messages of its own.
type Deps struct {
	// Catalog finds queues and groups.
	Catalog *catalog.Cache
	// Queues creates and deletes queues and groups through the metadata role.
	Queues dmsv1.QueueServiceClient
	// Ingest stores published messages, answering once they are durable as
	// the queue's mode demands.
	Ingest ingestv1.IngestServiceClient
	// Delivery is the delivery engine of this process: consumers are its
	// push sessions, basic.get its receives.
	Delivery *delivery.Engine
	// Etcd keeps exchanges, bindings and the AMQP arguments of queues.
	Etcd *clientv3.Client
	// TLS, when set, makes the listener serve AMQPS (TLS) only.
	TLS *tls.Config
	// Auth, when set, makes every connection log in as a DMS user and
	// every method be authorized (auth.go).
	Auth *Auth
}

// Server is the AMQP 0-9-1 listener of a node.
type Server struct {
	cfg       Config
	deps      Deps
	logger    *slog.Logger
	topo      *topology
	consumers consumerRegistry
	alarm     alarm

	lis net.Listener

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[*conn]struct{}
	wg     sync.WaitGroup
}

// New checks cfg and returns a server; Listen opens its listener.
func New(cfg Config, deps Deps, logger *slog.Logger) (*Server, error) {
	if err := catalog.ValidateProject(cfg.DefaultProject); err != nil {
		return nil, fmt.Errorf("amqp: -protocols.default-project: %w", err)
	}
	if deps.Delivery == nil {
		return nil, errors.New("amqp: the AMQP front end needs the delivery role in the same process")
	}
	if cfg.FrameMax == 0 {
		cfg.FrameMax = 131072
	}
	if cfg.ChannelMax == 0 {
		cfg.ChannelMax = 2047
	}
	s := &Server{cfg: cfg, deps: deps, logger: logger, conns: map[*conn]struct{}{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.topo = newTopology(deps.Etcd, logger)
	return s, nil
}

// Listen opens the listener and loads the exchanges and bindings.
func (s *Server) Listen() error {
	if err := s.topo.start(s.ctx); err != nil {
		return fmt.Errorf("amqp: loading exchanges and bindings: %w", err)
	}
	lis, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("amqp listener: %w", err)
	}
	if s.deps.TLS != nil {
		lis = tls.NewListener(lis, s.deps.TLS)
	}
	s.lis = lis
	s.wg.Add(1)
	go s.reapLoop()
	return nil
}

// Addr returns the address the listener listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// Serve accepts connections until Close.
func (s *Server) Serve() {
	s.wg.Add(1)
	defer s.wg.Done()
	for {
		nc, err := s.lis.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logger.Error("amqp: accepting connections stopped", "err", err)
			}
			return
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection (their unacked deliveries
// return to their queues) and waits for them to end.
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.cancel()
	if s.lis != nil {
		_ = s.lis.Close()
	}
	for c := range s.conns {
		c.shutdown()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.topo.stop(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
