package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/ingest"
	"github.com/opendms/dms/services/kafka/groups"
	"github.com/opendms/dms/services/placement"
	"github.com/opendms/dms/services/recordfmt"
)

// maxStoredBatchBytes is the largest batch storage takes by default (its
// partition logs' 8 MiB batch limit, less room for the log's own header
// and encryption).
const maxStoredBatchBytes = 8<<20 - 1024

// Deps are what the front end calls: it keeps no data of its own.
type Deps struct {
	// Node is this node's name.
	Node string
	// Catalog finds topics (queues) by name.
	Catalog *catalog.Cache
	// Placement gives partition leaders, replicas, in-sync replicas and
	// epochs, and the members with their Kafka addresses.
	Placement *placement.Cache
	// Storage appends and reads partitions, on their leaders.
	Storage storagev1.StorageServiceClient
	// Queues creates, deletes and grows topics through the metadata role.
	Queues dmsv1.QueueServiceClient
	// Consumer serves share groups (KIP-932) from DMS consumer groups:
	// receives with a visibility timeout, acks.
	Consumer dmsv1.ConsumerServiceClient
	// Quotas admits produced batches by their project's quotas, the check
	// the native API and AMQP go through; nil admits everything.
	Quotas *ingest.Quotas
	// Etcd keeps the producer id counter.
	Etcd *clientv3.Client
	// TLS, when set, makes the listener serve TLS only (Kafka's SSL and,
	// with Auth, SASL_SSL).
	TLS *tls.Config
	// Auth, when set, makes every connection authenticate with SASL and
	// every request be authorized (sasl.go, access.go); nil serves every
	// connection in the default project, as with authentication off.
	Auth *Auth
}

// Server is the Kafka listener of a node.
type Server struct {
	cfg    Config
	deps   Deps
	logger *slog.Logger

	lis        net.Listener
	advertised string
	producerID *producerIDs
	groups     *groups.Coordinator
	shares     *shareState

	ctx    context.Context
	cancel context.CancelFunc
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// New checks cfg and returns a server; Listen opens its listener.
func New(cfg Config, deps Deps, logger *slog.Logger) (*Server, error) {
	if err := catalog.ValidateProject(cfg.DefaultProject); err != nil {
		return nil, fmt.Errorf("kafka: -protocols.default-project: %w", err)
	}
	if _, err := parseTopicMode(cfg.DefaultTopicMode); err != nil {
		return nil, fmt.Errorf("kafka: -kafka.default-topic-mode: %w", err)
	}
	if cfg.MaxMessageBytes < recordfmt.KafkaBatchHeaderSize || cfg.MaxMessageBytes > maxStoredBatchBytes {
		return nil, fmt.Errorf("kafka: -kafka.max-message-bytes %d is not in [%d, %d]", cfg.MaxMessageBytes, recordfmt.KafkaBatchHeaderSize, maxStoredBatchBytes)
	}
	s := &Server{cfg: cfg, deps: deps, logger: logger, conns: map[net.Conn]struct{}{}}
	s.producerID = newProducerIDs(deps.Etcd)
	s.groups = newGroupCoordinator(cfg, deps, s)
	s.shares = newShareState()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Listen opens the listener; the advertised address is known from then on.
func (s *Server) Listen() error {
	lis, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("kafka listener: %w", err)
	}
	if s.deps.TLS != nil {
		lis = tls.NewListener(lis, s.deps.TLS)
	}
	s.lis = lis
	s.advertised = s.cfg.AdvertisedAddr
	if s.advertised == "" {
		s.advertised = lis.Addr().String()
	}
	if _, _, err := net.SplitHostPort(s.advertised); err != nil {
		_ = lis.Close()
		return fmt.Errorf("kafka: advertised address %q is not HOST:PORT: %w", s.advertised, err)
	}
	return nil
}

// Addr returns the address the listener listens on.
func (s *Server) Addr() string { return s.lis.Addr().String() }

// AdvertisedAddr returns the address given to clients in Metadata.
func (s *Server) AdvertisedAddr() string { return s.advertised }

// Serve accepts connections until Close.
func (s *Server) Serve() {
	s.wg.Add(1)
	defer s.wg.Done()
	for {
		nc, err := s.lis.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.logger.Error("kafka: accepting connections stopped", "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			_ = nc.Close()
			return
		}
		s.conns[nc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(s.ctx, nc)
			s.mu.Lock()
			delete(s.conns, nc)
			s.mu.Unlock()
		}()
	}
}

// Close stops accepting, closes every connection and waits for their
// requests to end. A request in flight is cancelled: an append already
// handed to storage completes or not there, and the client, which gets no
// answer, retries it (idempotently, for an idempotent producer).
func (s *Server) Close(ctx context.Context) error {
	s.mu.Lock()
	s.cancel()
	if s.lis != nil {
		_ = s.lis.Close()
	}
	for nc := range s.conns {
		_ = nc.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.groups.Close(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
