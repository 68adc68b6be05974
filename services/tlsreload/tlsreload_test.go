package tlsreload_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/tlsreload"
	"github.com/opendms/dms/services/tlsreload/tlstest"
)

// serve accepts TLS connections on a loopback port until the test ends.
func serve(t *testing.T, cfg *tls.Config) string {
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("x"))
				_ = c.Close()
			}()
		}
	}()
	return lis.Addr().String()
}

// handshake dials addr and returns the certificate the server showed.
func handshake(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	// The client's certificate is checked by the server after the
	// client's handshake returns (TLS 1.3): a read sees the refusal.
	if _, err := c.Read(make([]byte, 1)); err != nil && err != io.EOF {
		return "", err
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

var logger = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "test CA")
	files := tlstest.Write(t, dir, ca.Issue(t, "first", "127.0.0.1"), ca)
	src, err := tlsreload.Load(tlsreload.Files{CertFile: files.Cert, KeyFile: files.Key}, logger)
	require.NoError(t, err)
	addr := serve(t, src.ServerConfig())
	client := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}

	name, err := handshake(addr, client)
	require.NoError(t, err)
	require.Equal(t, "first", name)

	tlstest.Write(t, dir, ca.Issue(t, "second", "127.0.0.1"), ca)
	name, err = handshake(addr, client)
	require.NoError(t, err)
	require.Equal(t, "second", name, "the next handshake after the files changed shows the new certificate")

	// A certificate written without its key (a rotation half done) does
	// not load: the previous one serves on, and the pair loads once the
	// key follows.
	third := ca.Issue(t, "third", "127.0.0.1")
	require.NoError(t, os.WriteFile(files.Cert, third.CertPEM, 0o600))
	name, err = handshake(addr, client)
	require.NoError(t, err)
	require.Equal(t, "second", name)
	require.NoError(t, os.WriteFile(files.Key+".tmp", third.KeyPEM, 0o600))
	require.NoError(t, os.Rename(files.Key+".tmp", files.Key))
	name, err = handshake(addr, client)
	require.NoError(t, err)
	require.Equal(t, "third", name)
	require.Equal(t, 3, src.Loads())
}

func TestClientAuth(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "server CA")
	clientCA := tlstest.NewCA(t, "client CA")
	files := tlstest.Write(t, dir, ca.Issue(t, "server", "127.0.0.1"), clientCA)
	good := clientCA.Issue(t, "good client")
	stranger := tlstest.NewCA(t, "other CA").Issue(t, "stranger")

	for _, tc := range []struct {
		auth                     tlsreload.ClientAuth
		none, good, wrongCAAllow bool
	}{
		{tlsreload.ClientAuthNone, true, true, true},
		{tlsreload.ClientAuthRequest, true, true, false},
		{tlsreload.ClientAuthRequire, false, true, false},
	} {
		t.Run(string(tc.auth), func(t *testing.T) {
			src, err := tlsreload.Load(tlsreload.Files{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ClientAuth: tc.auth}, logger)
			require.NoError(t, err)
			addr := serve(t, src.ServerConfig())
			for _, c := range []struct {
				name  string
				certs []tls.Certificate
				ok    bool
			}{{"no certificate", nil, tc.none}, {"client CA's", []tls.Certificate{good.TLS(t)}, tc.good}, {"another CA's", []tls.Certificate{stranger.TLS(t)}, tc.wrongCAAllow}} {
				// GetClientCertificate sends the certificate even when the
				// server's list of acceptable CAs does not name its issuer
				// (Go's client would send none then).
				send := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
					if c.certs == nil {
						return &tls.Certificate{}, nil
					}
					return &c.certs[0], nil
				}
				_, err := handshake(addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", GetClientCertificate: send})
				if c.ok {
					require.NoError(t, err, c.name)
				} else {
					require.Error(t, err, c.name)
				}
			}
		})
	}
}

func TestLoadRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	ca := tlstest.NewCA(t, "CA")
	files := tlstest.Write(t, dir, ca.Issue(t, "a"), ca)
	other := tlstest.Write(t, t.TempDir(), ca.Issue(t, "b"), ca)
	for name, f := range map[string]tlsreload.Files{
		"key of another certificate": {CertFile: files.Cert, KeyFile: other.Key},
		"missing file":               {CertFile: files.Cert, KeyFile: files.Key + ".missing"},
		"require without a CA":       {CertFile: files.Cert, KeyFile: files.Key, ClientAuth: tlsreload.ClientAuthRequire},
		"unknown client auth":        {CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ClientAuth: "maybe"},
		"CA file without PEM":        {CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.Key, ClientAuth: tlsreload.ClientAuthRequest},
	} {
		_, err := tlsreload.Load(f, logger)
		require.Error(t, err, name)
	}
}

func TestPeerConfig(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster CA")
	a := tlstest.Write(t, t.TempDir(), ca.Issue(t, "node-a"), ca)
	b := tlstest.Write(t, t.TempDir(), ca.Issue(t, "node-b"), ca)
	strangerCA := tlstest.NewCA(t, "other CA")
	c := tlstest.Write(t, t.TempDir(), strangerCA.Issue(t, "node-c"), strangerCA)
	load := func(f tlstest.Files) *tlsreload.Source {
		src, err := tlsreload.Load(tlsreload.Files{CertFile: f.Cert, KeyFile: f.Key, ClientCAFile: f.CA, ClientAuth: tlsreload.ClientAuthRequire}, logger)
		require.NoError(t, err)
		return src
	}
	addr := serve(t, load(a).ServerConfig())
	// Nodes are dialed by address; their certificates name none.
	name, err := handshake(addr, load(b).PeerConfig())
	require.NoError(t, err)
	require.Equal(t, "node-a", name)
	_, err = handshake(addr, load(c).PeerConfig())
	require.Error(t, err, "a node of another CA neither trusts nor is trusted")
	_, err = net.Dial("tcp", addr)
	require.NoError(t, err)
}

// BenchmarkHandshake is a full TLS 1.3 handshake (ECDSA P-256) over
// loopback, client and server in this process, with a static
// configuration and with a Source's (which stats the files each time).
func BenchmarkHandshake(b *testing.B) {
	ca := tlstest.NewCA(b, "bench CA")
	leaf := ca.Issue(b, "bench", "127.0.0.1")
	files := tlstest.Write(b, b.TempDir(), leaf, ca)
	src, err := tlsreload.Load(tlsreload.Files{CertFile: files.Cert, KeyFile: files.Key}, logger)
	if err != nil {
		b.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{
		"static":    {Certificates: []tls.Certificate{leaf.TLS(b)}},
		"reloading": src.ServerConfig(),
	} {
		b.Run(name, func(b *testing.B) {
			lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer lis.Close()
			go func() {
				for {
					c, err := lis.Accept()
					if err != nil {
						return
					}
					go func() { _ = c.(*tls.Conn).Handshake(); _ = c.Close() }()
				}
			}()
			client := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1"}
			for b.Loop() {
				c, err := tls.Dial("tcp", lis.Addr().String(), client)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.Close()
			}
		})
	}
}

// BenchmarkConfigForClient is what a Source adds to each handshake: the
// stat of the files and the lookup of the current configuration.
func BenchmarkConfigForClient(b *testing.B) {
	ca := tlstest.NewCA(b, "bench CA")
	files := tlstest.Write(b, b.TempDir(), ca.Issue(b, "bench"), ca)
	src, err := tlsreload.Load(tlsreload.Files{CertFile: files.Cert, KeyFile: files.Key, ClientCAFile: files.CA, ClientAuth: tlsreload.ClientAuthRequest}, logger)
	if err != nil {
		b.Fatal(err)
	}
	get := src.ServerConfig("h2").GetConfigForClient
	for b.Loop() {
		if _, err := get(nil); err != nil {
			b.Fatal(err)
		}
	}
}
