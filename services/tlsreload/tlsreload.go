// Package tlsreload serves TLS from PEM files that may change while the
// process runs: a certificate renewed by an ACME client, cert-manager or an
// operator's cp is used from the next handshake on, without a restart.
//
// Every handshake stats the files (about a microsecond each, against the
// tens of microseconds to milliseconds of the handshake itself) and loads
// them again when one changed: another file, another size or another
// modification time. A load that fails (a certificate written before its
// key, say) keeps the previous certificate serving and is tried again when
// the files change next, so a rotation never takes a listener down.
//
// The package imports nothing else of the project.
package tlsreload

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
)

// ClientAuth says what a listener asks of its clients' certificates.
type ClientAuth string

// The values of -tls.client-auth.
const (
	// ClientAuthNone asks for no client certificate.
	ClientAuthNone ClientAuth = "none"
	// ClientAuthRequest asks for one and verifies it against the client
	// CAs when the client sends one; a client without one is served.
	ClientAuthRequest ClientAuth = "request"
	// ClientAuthRequire refuses the handshake of a client without a
	// certificate that the client CAs signed.
	ClientAuthRequire ClientAuth = "require"
)

// Files names the PEM files of a listener.
type Files struct {
	// CertFile holds the certificate chain, leaf first.
	CertFile string
	// KeyFile holds the leaf's private key.
	KeyFile string
	// ClientCAFile holds the CAs that sign accepted client certificates
	// (and, for a cluster's mutual TLS, the peers' server certificates).
	ClientCAFile string
	// ClientAuth is none, request or require; empty is none.
	ClientAuth ClientAuth
}

// Source holds the current certificate and client CAs of a set of files.
type Source struct {
	files  Files
	auth   tls.ClientAuthType
	logger *slog.Logger

	mu        sync.Mutex
	loaded    []os.FileInfo // what the files were when last loaded
	failed    []os.FileInfo // what they were when a load last failed
	cert      *tls.Certificate
	clientCAs *x509.CertPool
	configs   map[string]*tls.Config // per ALPN protocol list, rebuilt on load
	loads     int
}

// Load reads the files once and returns their Source; an error here (a
// missing file, a key that is not the certificate's) stops the caller.
func Load(files Files, logger *slog.Logger) (*Source, error) {
	if files.CertFile == "" || files.KeyFile == "" {
		return nil, errors.New("tls: a certificate file and a key file are both needed")
	}
	s := &Source{files: files, logger: logger}
	switch files.ClientAuth {
	case "", ClientAuthNone:
		s.auth = tls.NoClientCert
	case ClientAuthRequest:
		s.auth = tls.VerifyClientCertIfGiven
	case ClientAuthRequire:
		s.auth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("tls: client auth %q: use none, request or require", files.ClientAuth)
	}
	if s.auth != tls.NoClientCert && files.ClientCAFile == "" {
		return nil, fmt.Errorf("tls: client auth %s needs a client CA file", files.ClientAuth)
	}
	infos, err := s.stat()
	if err != nil {
		return nil, err
	}
	if err := s.load(infos); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Source) paths() []string {
	p := []string{s.files.CertFile, s.files.KeyFile}
	if s.files.ClientCAFile != "" {
		p = append(p, s.files.ClientCAFile)
	}
	return p
}

func (s *Source) stat() ([]os.FileInfo, error) {
	paths := s.paths()
	infos := make([]os.FileInfo, len(paths))
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		infos[i] = fi
	}
	return infos, nil
}

func same(a, b []os.FileInfo) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()) {
			return false
		}
	}
	return true
}

// load reads the files; s.mu is held or s is not shared yet.
func (s *Source) load(infos []os.FileInfo) error {
	cert, err := tls.LoadX509KeyPair(s.files.CertFile, s.files.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: %s and %s: %w", s.files.CertFile, s.files.KeyFile, err)
	}
	var pool *x509.CertPool
	if s.files.ClientCAFile != "" {
		pem, err := os.ReadFile(s.files.ClientCAFile)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("tls: %s holds no PEM certificate", s.files.ClientCAFile)
		}
	}
	s.cert, s.clientCAs, s.loaded, s.failed = &cert, pool, infos, nil
	s.configs = map[string]*tls.Config{}
	s.loads++
	return nil
}

// current returns the certificate and client CAs, loading the files again
// when they changed since.
func (s *Source) current() (*tls.Certificate, *x509.CertPool, map[string]*tls.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	infos, err := s.stat()
	switch {
	case err != nil:
		// A file being replaced may be missing for a moment: serve on.
	case same(infos, s.loaded) || same(infos, s.failed):
	default:
		if err := s.load(infos); err != nil {
			s.failed = infos
			s.logger.Warn("tls: the changed certificate files do not load; serving the previous certificate until they change again", "err", err)
		} else {
			s.logger.Info("tls: certificate files changed; new handshakes use the new certificate", "cert_file", s.files.CertFile,
				"subject", leafSubject(s.cert))
		}
	}
	return s.cert, s.clientCAs, s.configs
}

// Loads counts the successful loads of the files, the first included.
func (s *Source) Loads() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

func leafSubject(c *tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return c.Leaf.Subject.String()
}

// ServerConfig returns the configuration of a listener that negotiates
// nextProtos by ALPN (h2 for gRPC; h2 and http/1.1 for HTTP; none for
// Kafka and AMQP). Each handshake gets the current files' certificate.
func (s *Source) ServerConfig(nextProtos ...string) *tls.Config {
	key := strings.Join(nextProtos, ",")
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, cas, configs := s.current()
			s.mu.Lock()
			defer s.mu.Unlock()
			if c := configs[key]; c != nil {
				return c, nil
			}
			c := &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*cert},
				ClientAuth:   s.auth,
				ClientCAs:    cas,
				NextProtos:   nextProtos,
			}
			configs[key] = c
			return c, nil
		},
	}
}

// PeerConfig returns the client side of a cluster's mutual TLS: it shows
// the current certificate and accepts a server whose chain the CAs of
// ClientCAFile sign, whatever name or address it was dialed by (nodes are
// dialed by the addresses they advertise; every certificate the cluster
// CA signs is a node's).
func (s *Source) PeerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		// The chain is verified in VerifyConnection, against the cluster
		// CA and without a name.
		InsecureSkipVerify: true, //nolint:gosec
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _, _ := s.current()
			return cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			_, cas, _ := s.current()
			if cas == nil {
				return errors.New("tls: no cluster CA to verify the peer with")
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("tls: the peer sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: cas, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("tls: the peer's certificate is not the cluster's: %w", err)
			}
			return nil
		},
	}
}
