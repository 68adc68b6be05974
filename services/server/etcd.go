package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/server/modules"
)

// initEtcd starts the embedded etcd unless external endpoints are given,
// then opens the client and the node's session lease.
func (s *Server) initEtcd(ctx context.Context) (modules.Stopper, error) {
	stop := modules.StopFunc(func(context.Context) error {
		if s.session != nil {
			s.session.Close()
		}
		if s.cli != nil {
			_ = s.cli.Close()
		}
		if s.etcd != nil {
			s.etcd.Close()
		}
		return nil
	})
	if err := s.openEtcd(ctx); err != nil {
		_ = stop(context.Background())
		return nil, err
	}
	return stop, nil
}

func (s *Server) openEtcd(ctx context.Context) error {
	endpoints := strings.Split(s.cfg.Etcd.Endpoints, ",")
	if s.cfg.Etcd.Endpoints == "" {
		ecfg := embed.NewConfig()
		ecfg.Name = "dmsd"
		ecfg.Dir = filepath.Join(s.cfg.Node.DataDir, "etcd")
		ecfg.LogLevel = "error"
		ecfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// Placement, ISR and lease churn would grow etcd's history without
		// bound; an hour of it is kept (every watcher of dmsd reloads when
		// its revision was compacted away).
		ecfg.AutoCompactionMode, ecfg.AutoCompactionRetention = embed.CompactorModePeriodic, "1h"
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
	tlsCfg, err := s.cfg.Etcd.clientTLS()
	if err != nil {
		return err
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop(), TLS: tlsCfg})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	s.cli = cli
	ttl := max(s.cfg.Node.SessionTTL.Round(time.Second), 2*time.Second)
	if s.session, err = newNodeSession(ctx, cli, ttl, s.logger); err != nil {
		return err
	}
	return nil
}

// clientTLS returns the TLS configuration of the connections to an
// external etcd, or nil when no -etcd.*-file flag is given.
func (c EtcdConfig) clientTLS() (*tls.Config, error) {
	if c.CAFile == "" && c.CertFile == "" && c.KeyFile == "" {
		return nil, nil
	}
	if c.Endpoints == "" {
		return nil, errors.New("etcd: -etcd.ca-file, -etcd.cert-file and -etcd.key-file are for an external etcd (-etcd.endpoints); the embedded one listens on loopback without TLS")
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: -etcd.ca-file: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd: -etcd.ca-file %s holds no PEM certificate", c.CAFile)
		}
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return nil, errors.New("etcd: -etcd.cert-file and -etcd.key-file go together")
	}
	if c.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// receiptKey returns the cluster's receipt-signing key, creating it once.
func receiptKey(ctx context.Context, cli *clientv3.Client) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	resp, err := cli.Txn(ctx).
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
