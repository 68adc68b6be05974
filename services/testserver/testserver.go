// Package testserver starts a whole dmsd in-process for tests: every role,
// an embedded etcd on free ports and a temporary data directory, real gRPC
// and HTTP listeners.
package testserver

import (
	"context"
	"crypto/tls"
	"flag"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/opendms/dms/services/server"
)

// nodeCounter names the test servers of a process apart.
var nodeCounter atomic.Int32

// Server is a running in-process dmsd.
type Server struct {
	*server.Server
	// Conn is a gRPC connection to the server's public listener.
	Conn *grpc.ClientConn
	// Internal is a gRPC connection to its internal listener, where the
	// roles' cluster APIs (storage, scheduler, ...) are served.
	Internal *grpc.ClientConn
	DataDir  string
	cfg      server.Config
	args     []string
	now      func() time.Time
}

// Option adjusts the server before start.
type Option func(*Server)

// WithFlags adds dmsd command-line flags; the test server's own choices
// (temporary data directory, free ports) apply only where none is given.
func WithFlags(args ...string) Option {
	return func(s *Server) { s.args = append(s.args, args...) }
}

// WithClock makes the roles read time from clock.
func WithClock(clock *Clock) Option {
	return func(s *Server) { s.now = clock.Now }
}

// Start runs all roles on free ports in a temporary directory; t.Cleanup
// stops it.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{now: time.Now}
	for _, o := range opts {
		o(s)
	}
	f := flag.NewFlagSet("testserver", flag.ContinueOnError)
	s.cfg.RegisterFlags(f)
	if err := f.Parse(s.args); err != nil {
		t.Fatal(err)
	}
	given := map[string]bool{}
	f.Visit(func(fl *flag.Flag) {
		given[fl.Name] = true
		if name, isAlias := server.FlagAliases[fl.Name]; isAlias {
			given[name] = true
		}
	})
	if !given["node.data-dir"] {
		s.cfg.Node.DataDir = t.TempDir()
	}
	if !given["node.name"] {
		s.cfg.Node.Name = "test-" + strconv.Itoa(int(nodeCounter.Add(1)))
	}
	for name, addr := range map[string]*string{"server.grpc-addr": &s.cfg.Server.GRPCAddr, "server.http-addr": &s.cfg.Server.HTTPAddr, "server.internal-grpc-addr": &s.cfg.Server.InternalGRPCAddr,
		// Not Kafka's 9092: tests start several servers, and loadtest runs a
		// real Kafka there.
		"kafka.addr": &s.cfg.Kafka.Addr, "amqp.addr": &s.cfg.AMQP.Addr} {
		if !given[name] {
			*addr = "127.0.0.1:0"
		}
	}
	s.DataDir = s.cfg.Node.DataDir
	s.start(t)
	t.Cleanup(s.stop)
	return s
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		// DMS_TEST_LOG_LEVEL=info shows what the roles do, when a test
		// needs explaining.
		level := slog.LevelWarn
		_ = level.UnmarshalText([]byte(os.Getenv("DMS_TEST_LOG_LEVEL")))
		logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	}
	srv, err := server.New(s.cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv.SetClock(s.now)
	if err := srv.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	creds := insecure.NewCredentials()
	if s.cfg.TLS.CertFile != "" {
		// Tests of TLS itself dial with clients of their own that verify
		// the server; this helper connection only needs to get through.
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec
	}
	conn, err := grpc.NewClient(srv.GRPCAddr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	// The internal listener takes the cluster's nodes only: this connection
	// shows what the node itself shows the others.
	internal, err := grpc.NewClient(srv.InternalGRPCAddr, srv.InternalDialOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	s.Server, s.Conn, s.Internal = srv, conn, internal
}

func (s *Server) stop() {
	_ = s.Conn.Close()
	_ = s.Internal.Close()
	s.Server.Stop()
}

// Restart stops the server and starts it again on the same data directory,
// as after an orderly shutdown. Addresses change.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop()
	s.start(t)
}

// RestartWith stops the server, calls between (which may change the data
// directory, as damage or an operator would) and starts it again on the same
// data directory.
func (s *Server) RestartWith(t testing.TB, between func()) {
	t.Helper()
	s.stop()
	between()
	s.start(t)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
