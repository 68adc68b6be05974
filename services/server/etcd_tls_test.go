package server_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// writeCert signs a certificate for 127.0.0.1 with ca (self-signed when ca
// is nil) and writes it and its key as PEM files; it returns the paths and
// the certificate and key, to sign others.
func writeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isCA bool) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, IsCA: isCA, BasicConstraintsValid: true,
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	require.NoError(t, err)
	cert, err = x509.ParseCertificate(der)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile, cert, key
}

// TestExternalEtcdOverTLS: a node reaches an etcd that serves TLS only and
// requires client certificates, with -etcd.ca-file, -etcd.cert-file and
// -etcd.key-file; flags that cannot work stop it at startup with a message
// naming them.
func TestExternalEtcdOverTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := writeCert(t, dir, "ca", nil, nil, true)
	serverCert, serverKey, _, _ := writeCert(t, dir, "etcd", ca, caKey, false)
	clientCert, clientKey, _, _ := writeCert(t, dir, "node", ca, caKey, false)

	cfg := embed.NewConfig()
	cfg.Name = "tls-etcd"
	cfg.Dir = filepath.Join(dir, "etcd")
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	client, peer := url.URL{Scheme: "https", Host: "127.0.0.1:0"}, url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	cfg.ClientTLSInfo.CertFile, cfg.ClientTLSInfo.KeyFile, cfg.ClientTLSInfo.TrustedCAFile = serverCert, serverKey, caFile
	cfg.ClientTLSInfo.ClientCertAuth = true
	e, err := embed.StartEtcd(cfg)
	require.NoError(t, err)
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd with TLS not ready")
	}
	endpoint := e.Clients[0].Addr().String()

	srv, err := startRaw(t, t.TempDir(), "-etcd.endpoints", endpoint, "-etcd.ca-file", caFile, "-etcd.cert-file", clientCert, "-etcd.key-file", clientKey)
	require.NoError(t, err, "a node with the CA and a client certificate")
	require.Equal(t, endpoint, srv.EtcdEndpoint)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-etcd.endpoints", endpoint, "-etcd.ca-file", caFile, "-etcd.cert-file", clientCert}, "-etcd.cert-file and -etcd.key-file go together"},
		{[]string{"-etcd.endpoints", endpoint, "-etcd.ca-file", clientKey}, "holds no PEM certificate"},
		{[]string{"-etcd.ca-file", caFile}, "are for an external etcd (-etcd.endpoints)"},
	} {
		_, err := startRaw(t, t.TempDir(), tc.args...)
		require.ErrorContains(t, err, tc.want, "%v", tc.args)
	}
}
