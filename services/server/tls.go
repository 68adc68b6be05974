package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/opendms/dms/services/authz"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/tlsreload"
)

// TLS on the listeners, and how the nodes of a cluster know each other on
// the internal listener.
//
// The public listeners (gRPC, HTTP, Kafka, AMQP) serve TLS with the
// certificate of -tls.cert-file once it is given, read again whenever the
// files change (services/tlsreload). The internal listener serves the
// cluster's nodes only: with -internal.tls.* every connection is mutual
// TLS with certificates of the cluster CA, and with a cluster secret
// (-cluster.secret-file, or with -auth.enabled one generated in etcd) every
// call must carry it. A client's token, AK/SK or password never passes
// either: the REST gateway turns it into a principal assertion, signed with
// the cluster's token key, and sends that with the node's own credentials.

// clusterSecretHeader is the metadata key of the cluster secret.
const clusterSecretHeader = "dms-cluster-secret"

// minClusterSecretLen bounds a secret from below: 128 bits in base64.
const minClusterSecretLen = 22

// loadTLS reads the certificate files, before any listener opens.
func (s *Server) loadTLS() error {
	c := s.cfg.TLS
	logger := s.logger.With("component", "tls")
	switch {
	case c.CertFile != "" || c.KeyFile != "":
		src, err := tlsreload.Load(tlsreload.Files{CertFile: c.CertFile, KeyFile: c.KeyFile, ClientCAFile: c.ClientCAFile, ClientAuth: tlsreload.ClientAuth(c.ClientAuth)}, logger)
		if err != nil {
			return fmt.Errorf("-tls.cert-file, -tls.key-file: %w", err)
		}
		s.tls = src
	case c.ClientCAFile != "" || (c.ClientAuth != "" && c.ClientAuth != string(tlsreload.ClientAuthNone)):
		return errors.New("-tls.client-ca-file and -tls.client-auth need -tls.cert-file and -tls.key-file")
	}
	it := s.cfg.Internal.TLS
	if it.CertFile == "" && it.KeyFile == "" && it.CAFile == "" {
		return nil
	}
	if it.CertFile == "" || it.KeyFile == "" || it.CAFile == "" {
		return errors.New("the internal listener's mutual TLS needs all of -internal.tls.cert-file, -internal.tls.key-file and -internal.tls.ca-file")
	}
	src, err := tlsreload.Load(tlsreload.Files{CertFile: it.CertFile, KeyFile: it.KeyFile, ClientCAFile: it.CAFile, ClientAuth: tlsreload.ClientAuthRequire}, logger.With("listener", "internal"))
	if err != nil {
		return fmt.Errorf("-internal.tls.*: %w", err)
	}
	s.internalTLS = src
	return nil
}

// grpcServerCreds returns the transport of a gRPC listener.
func (s *Server) grpcServerCreds(public bool) grpc.ServerOption {
	src := s.internalTLS
	if public {
		src = s.tls
	}
	if src == nil {
		return grpc.Creds(insecure.NewCredentials())
	}
	return grpc.Creds(credentials.NewTLS(src.ServerConfig("h2")))
}

// loadClusterSecret reads -cluster.secret-file or, with authentication on
// and no mutual TLS between the nodes, the secret kept in etcd (made by
// the cluster's first node). Without either the internal listener serves
// whoever reaches it, as it must on loopback with authentication off.
func (s *Server) loadClusterSecret(ctx context.Context) error {
	var secrets []string
	switch {
	case s.cfg.Cluster.SecretFile != "":
		data, err := os.ReadFile(s.cfg.Cluster.SecretFile)
		if err != nil {
			return fmt.Errorf("-cluster.secret-file: %w", err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			if len(line) < minClusterSecretLen {
				return fmt.Errorf("-cluster.secret-file %s: a secret of %d characters is too short; use at least %d (openssl rand -base64 32)", s.cfg.Cluster.SecretFile, len(line), minClusterSecretLen)
			}
			secrets = append(secrets, line)
		}
		if len(secrets) == 0 {
			return fmt.Errorf("-cluster.secret-file %s holds no secret", s.cfg.Cluster.SecretFile)
		}
	case s.cfg.Auth.Enabled && s.internalTLS == nil:
		secret, err := etcdClusterSecret(ctx, s.cli)
		if err != nil {
			return err
		}
		secrets = []string{secret}
	default:
		return nil
	}
	s.clusterSecretSent = secrets[0]
	for _, sec := range secrets {
		sum := sha256.Sum256([]byte(sec))
		s.clusterSecrets = append(s.clusterSecrets, sum)
	}
	return nil
}

// etcdClusterSecret returns the cluster's generated secret, creating it
// once. Whoever reads etcd controls the cluster anyway.
func etcdClusterSecret(ctx context.Context, cli *clientv3.Client) (string, error) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	secret := base64.RawStdEncoding.EncodeToString(b)
	resp, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(catalog.ClusterSecretKey), "=", 0)).
		Then(clientv3.OpPut(catalog.ClusterSecretKey, secret)).
		Else(clientv3.OpGet(catalog.ClusterSecretKey)).Commit()
	if err != nil {
		return "", fmt.Errorf("cluster secret: %w", err)
	}
	if !resp.Succeeded {
		secret = string(resp.Responses[0].GetResponseRange().Kvs[0].Value)
	}
	return secret, nil
}

// InternalDialOptions are what a caller of the internal listener needs:
// the node's mutual TLS and its cluster secret. The process dials the
// other nodes with them; tests and tools of the operator's use them too.
func (s *Server) InternalDialOptions() []grpc.DialOption {
	creds := insecure.NewCredentials()
	if s.internalTLS != nil {
		creds = credentials.NewTLS(s.internalTLS.PeerConfig("h2"))
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if s.clusterSecretSent != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(ClusterSecret(s.clusterSecretSent)))
	}
	return opts
}

// ClusterSecret is the per-RPC credential of a node on the internal
// listener.
type ClusterSecret string

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c ClusterSecret) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{clusterSecretHeader: string(c)}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// secret goes in clear without -internal.tls.*, which a private network
// must then make up for.
func (c ClusterSecret) RequireTransportSecurity() bool { return false }

// checkClusterCaller refuses a call to the internal listener that does not
// carry the cluster secret. (Mutual TLS refused strangers at the
// handshake.) Every configured secret is compared, in constant time over
// their SHA-256 sums.
func (s *Server) checkClusterCaller(ctx context.Context) error {
	if len(s.clusterSecrets) == 0 {
		return nil
	}
	v := metadata.ValueFromIncomingContext(ctx, clusterSecretHeader)
	ok := 0
	if len(v) == 1 {
		sum := sha256.Sum256([]byte(v[0]))
		for _, accepted := range s.clusterSecrets {
			ok |= subtle.ConstantTimeCompare(sum[:], accepted[:])
		}
	}
	if ok == 1 {
		return nil
	}
	noteDecision(ctx, authz.AnonymousPrincipal, "internal listener: not a cluster node", authz.Resource{})
	what := "carries no cluster secret"
	if len(v) > 0 {
		what = "carries a wrong cluster secret"
	}
	return rpcstatus.Error(errs.Wrapf(errs.ErrUnauthenticated,
		"the internal listener serves the cluster's nodes only, and this call %s: call the public listener, or give the node's -cluster.secret-file", what))
}

// clusterUnary and clusterStream guard the internal listener.
func (s *Server) clusterUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if err := s.checkClusterCaller(ctx); err != nil {
		return nil, err
	}
	return handler(ctx, req)
}

func (s *Server) clusterStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if err := s.checkClusterCaller(ss.Context()); err != nil {
		return err
	}
	return handler(srv, ss)
}

// stripNodeHeaders drops the headers that grpc-gateway would pass on as the
// dms-* metadata only nodes set (a principal assertion, the forwarding
// mark, the cluster secret): an HTTP client must not pose as a node to the
// roles the REST gateway calls over the internal listener, nor leave its
// calls out of the audit trail as forwarded ones.
func stripNodeHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name := range r.Header {
			if strings.HasPrefix(name, "Grpc-Metadata-Dms-") {
				r.Header.Del(name)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// internalAuth says how the internal listener knows the nodes, for the
// startup log line.
func (s *Server) internalAuth() string {
	switch {
	case s.internalTLS != nil && len(s.clusterSecrets) > 0:
		return "mutual TLS and cluster secret"
	case s.internalTLS != nil:
		return "mutual TLS"
	case s.cfg.Cluster.SecretFile != "":
		return "cluster secret (" + s.cfg.Cluster.SecretFile + ")"
	case len(s.clusterSecrets) > 0:
		return "cluster secret (etcd)"
	default:
		return "none"
	}
}
