package server_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
	"github.com/opendms/dms/services/tlsreload/tlstest"
)

func tlsFlags(f tlstest.Files, extra ...string) testserver.Option {
	return testserver.WithFlags(append([]string{"-tls.cert-file", f.Cert, "-tls.key-file", f.Key}, extra...)...)
}

// kafkaRoundTrip produces a record to topic through a franz-go client made
// with opts and fetches it back.
func kafkaRoundTrip(t *testing.T, addr, topic string, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.AllowAutoTopicCreation(), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}, opts...)...)
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("over tls")}).FirstErr())
	for {
		fetches := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "no record fetched")
		for _, e := range fetches.Errors() {
			t.Logf("fetch: %v", e.Err)
		}
		if recs := fetches.Records(); len(recs) > 0 {
			require.Equal(t, "over tls", string(recs[0].Value))
			return
		}
	}
}

// With -tls.* every public listener serves TLS only, to real clients of
// each protocol, authentication included: a DMS client's Keystone token
// over HTTPS (HTTP/2), gRPC with a Bearer token, Kafka SASL_SSL, AMQPS.
func TestTLSOnEveryListener(t *testing.T) {
	ca := tlstest.NewCA(t, "dms test CA")
	files := tlstest.Write(t, t.TempDir(), ca.Issue(t, "dmsd", "127.0.0.1"), ca)
	s := startAuth(t, tlsFlags(files))
	clientTLS := &tls.Config{RootCAs: ca.Pool()}
	project := server.DefaultProject

	// HTTP: Keystone and the DMS REST API over HTTPS, HTTP/2 negotiated.
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS, ForceAttemptHTTP2: true}}
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":%q,"domain":{"name":"Default"}}}},"scope":{"project":{"id":%q}}}}`, adminPassword, project)
	resp, err := hc.Post("https://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, 2, resp.ProtoMajor, "HTTP/2 over TLS")
	token := resp.Header.Get("X-Subject-Token")
	require.NotEmpty(t, token)
	req, _ := http.NewRequest(http.MethodPost, "https://"+s.HTTPAddr+"/v1.0/"+project+"/queues", strings.NewReader(`{"name":"over-https"}`))
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err = hc.Do(req)
	require.NoError(t, err)
	raw, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(raw))
	var created struct{ ID string }
	require.NoError(t, json.Unmarshal(raw, &created))
	require.NotEmpty(t, created.ID)
	// Clear text on the TLS port gets Go's 400 for HTTP sent to HTTPS.
	resp, err = http.Get("http://" + s.HTTPAddr + "/healthz")
	require.NoError(t, err)
	_ = resp.Body.Close()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)

	// gRPC with TLS and a Bearer token; a clear-text client gets nothing.
	cc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	require.NoError(t, err)
	defer cc.Close()
	list, err := dmsv1.NewQueueServiceClient(cc).ListQueues(bearer(context.Background(), token), &dmsv1.ListQueuesRequest{Parent: "projects/" + project})
	require.NoError(t, err)
	require.Len(t, list.GetQueues(), 1)
	plain0, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer plain0.Close()
	_, err = dmsv1.NewQueueServiceClient(plain0).ListQueues(bearer(context.Background(), token), &dmsv1.ListQueuesRequest{Parent: "projects/" + project})
	require.Equal(t, codes.Unavailable, status.Code(err), "%v", err)

	// Kafka: SASL_SSL.
	kafkaRoundTrip(t, s.KafkaAddr, "tls-topic", kgo.DialTLSConfig(clientTLS.Clone()),
		kgo.SASL(plain.Auth{User: "admin", Pass: adminPassword}.AsMechanism()))

	// AMQP over TLS (amqps).
	conn, err := amqp091.DialTLS("amqps://admin:"+adminPassword+"@"+s.AMQPAddr+"/", clientTLS.Clone())
	require.NoError(t, err)
	defer conn.Close()
	ch, err := conn.Channel()
	require.NoError(t, err)
	_, err = ch.QueueDeclare("amqps-queue", true, false, false, false, nil)
	require.NoError(t, err)
	require.NoError(t, ch.PublishWithContext(context.Background(), "", "amqps-queue", false, false, amqp091.Publishing{Body: []byte("over amqps")}))
	require.Eventually(t, func() bool {
		d, ok, err := ch.Get("amqps-queue", true)
		require.NoError(t, err)
		return ok && string(d.Body) == "over amqps"
	}, 20*time.Second, 50*time.Millisecond)
}

// presented returns the common name of the certificate a listener shows
// in a new handshake, or the handshake's error.
func presented(addr string, cfg *tls.Config) (string, error) {
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// With -tls.client-auth=require every public listener refuses a client
// without a certificate of -tls.client-ca-file at the handshake; new
// certificate files are used from the next handshake on, on every
// listener, without a restart. Kafka's SSL (no SASL) with a client
// certificate produces and fetches.
func TestTLSClientCertificatesAndRotation(t *testing.T) {
	ca := tlstest.NewCA(t, "dms test CA")
	clientCA := tlstest.NewCA(t, "client CA")
	dir := t.TempDir()
	files := tlstest.Write(t, dir, ca.Issue(t, "first", "127.0.0.1"), clientCA)
	s := testserver.Start(t, tlsFlags(files, "-tls.client-ca-file", files.CA, "-tls.client-auth", "require"))
	clientCert := clientCA.Issue(t, "a client").TLS(t)
	// TLS 1.2, so that a refused client certificate fails the client's
	// handshake rather than its first read.
	withCert := &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12, Certificates: []tls.Certificate{clientCert}}
	withoutCert := &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}
	listeners := map[string]string{"grpc": s.GRPCAddr, "http": s.HTTPAddr, "kafka": s.KafkaAddr, "amqp": s.AMQPAddr}

	for name, addr := range listeners {
		cn, err := presented(addr, withCert)
		require.NoError(t, err, name)
		require.Equal(t, "first", cn, name)
		_, err = presented(addr, withoutCert)
		require.Error(t, err, "%s admits a client without a certificate", name)
	}
	kafkaRoundTrip(t, s.KafkaAddr, "ssl-topic", kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{clientCert}}))

	tlstest.Write(t, dir, ca.Issue(t, "second", "127.0.0.1"), clientCA)
	for name, addr := range listeners {
		cn, err := presented(addr, withCert)
		require.NoError(t, err, name)
		require.Equal(t, "second", cn, "%s shows the new certificate", name)
	}
	// gRPC clients connect to the new certificate too.
	cc, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(withCert.Clone())))
	require.NoError(t, err)
	defer cc.Close()
	_, err = dmsv1.NewQueueServiceClient(cc).ListQueues(context.Background(), &dmsv1.ListQueuesRequest{Parent: "projects/" + server.DefaultProject})
	require.NoError(t, err)
}

// The internal listener refuses, with authentication on, a caller that is
// not a node, even with a valid token of the operator's administrator: a
// client credential never reaches an internal API.
func TestInternalListenerRefusesClientCredentials(t *testing.T) {
	s := startAuth(t)
	token, _, code := keystoneToken(t, s, "Default", "admin", adminPassword, server.DefaultProject)
	require.Equal(t, http.StatusCreated, code)
	cc, err := grpc.NewClient(s.InternalGRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer cc.Close()
	storage := storagev1.NewStorageServiceClient(cc)
	for name, ctx := range map[string]context.Context{
		"nothing":              context.Background(),
		"the admin's token":    bearer(context.Background(), token),
		"a made-up secret":     metadata.AppendToOutgoingContext(context.Background(), "dms-cluster-secret", "0123456789012345678901234567890123456789"),
		"a principal asserted": metadata.AppendToOutgoingContext(context.Background(), "dms-principal", "user:someone"),
	} {
		_, err := storage.DeleteLogs(ctx, &storagev1.DeleteLogsRequest{Logs: []*storagev1.LogId{logid.Audit()}})
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%s: %v", name, err)
		require.Equal(t, "UNAUTHENTICATED", rpcstatus.Reason(err), name)
	}
	// The node's own connection (the test server's) carries the secret.
	_, err = storagev1.NewStorageServiceClient(s.Internal).GetLogInfo(context.Background(), &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{logid.Audit()}})
	require.NoError(t, err)
}

// Three nodes with mutual TLS of a cluster CA and a cluster secret file
// replicate and forward as ever; a caller without the cluster's
// certificate fails the handshake, one with it but without the secret is
// UNAUTHENTICATED, and the second secret of the file is accepted (a
// rotation in progress).
func TestClusterAuthenticatesNodes(t *testing.T) {
	ca := tlstest.NewCA(t, "cluster CA")
	dir := t.TempDir()
	files := tlstest.Write(t, dir, ca.Issue(t, "node"), ca)
	secretFile := filepath.Join(dir, "cluster-secret")
	const sent, accepted = "first-secret-of-the-cluster-0001", "second-secret-of-the-cluster-002"
	require.NoError(t, os.WriteFile(secretFile, []byte(sent+"\n"+accepted+"\n"), 0o600))
	_, nodes := startCluster(t, 3, "-internal.tls.cert-file", files.Cert, "-internal.tls.key-file", files.Key, "-internal.tls.ca-file", files.CA,
		"-cluster.secret-file", secretFile)

	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "mtls"})
	g := nodes[0].CreateGroup(t, q, "g")
	for i := range 10 {
		nodes[1].Send(t, q, fmt.Sprint(i))
	}
	require.Len(t, receiveAll(t, nodes[2], g, 10), 10)

	addr := nodes[0].InternalGRPCAddr
	call := func(creds credentials.TransportCredentials, secret string) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
		require.NoError(t, err)
		defer cc.Close()
		ctx := context.Background()
		if secret != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "dms-cluster-secret", secret)
		}
		_, err = metadatav1.NewMetadataServiceClient(cc).DescribePlacement(ctx, &metadatav1.DescribePlacementRequest{})
		return err
	}
	// No TLS, or TLS without the cluster's certificate: no connection.
	require.Equal(t, codes.Unavailable, status.Code(call(insecure.NewCredentials(), sent)))
	stranger := tlstest.NewCA(t, "other CA").Issue(t, "stranger").TLS(t)
	require.Equal(t, codes.Unavailable, status.Code(call(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, Certificates: []tls.Certificate{stranger}}), sent))) //nolint:gosec
	node := tlstest.Write(t, t.TempDir(), ca.Issue(t, "node"), ca)
	nodeCert, err := tls.LoadX509KeyPair(node.Cert, node.Key)
	require.NoError(t, err)
	asNode := credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), InsecureSkipVerify: true, Certificates: []tls.Certificate{nodeCert}}) //nolint:gosec
	err = call(asNode, "")
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	err = call(asNode, "not-the-secret-of-this-cluster-x")
	require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)
	require.NoError(t, call(asNode, sent))
	require.NoError(t, call(asNode, accepted))
}

// A client cannot leave its calls out of the audit trail by marking them
// as forwarded by a node: over gRPC (the public listener ignores the mark)
// nor over REST (the header grpc-gateway would turn into the mark is
// dropped).
func TestForwardingMarkIsTheNodesOnly(t *testing.T) {
	s := startAuth(t)
	p := server.DefaultProject
	scoped, _, code := keystoneToken(t, s, "Default", "admin", adminPassword, p)
	require.Equal(t, http.StatusCreated, code)
	ctx := metadata.AppendToOutgoingContext(bearer(context.Background(), scoped), "dms-forwarded-by", "node-x")
	_, err := s.Queues().CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/" + p, Queue: &dmsv1.Queue{DisplayName: "marked-grpc"}})
	require.NoError(t, err)
	status, body := call(t, http.MethodPost, "http://"+s.HTTPAddr+"/v1/projects/"+p+"/queues", `{"displayName":"marked-rest"}`,
		map[string]string{"X-Auth-Token": scoped, "Grpc-Metadata-Dms-Forwarded-By": "node-x"})
	require.Equal(t, http.StatusOK, status, "%v", body)

	body2 := `{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":"` + adminPassword + `","domain":{"name":"Default"}}}}}}`
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body2))
	require.NoError(t, err)
	_ = resp.Body.Close()
	admin := bearer(context.Background(), resp.Header.Get("X-Subject-Token"))
	for _, name := range []string{"marked-grpc", "marked-rest"} {
		waitRecord(t, admin, s, "CreateQueue", func(r *dmsv1.AuditRecord) bool { return strings.Contains(r.GetParameters(), name) })
	}
}
