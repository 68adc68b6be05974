package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

// In a cluster, identities and tokens are the cluster's: a token from one
// node's Keystone endpoint and an access key made through another work on
// every node, over gRPC and signed DMS REST, and a revocation on one node
// stops the key on the others.
func TestAuthAcrossNodes(t *testing.T) {
	t.Setenv("DMS_ADMIN_PASSWORD", adminPassword)
	etcd := testserver.StartEtcd(t)
	n1 := testserver.Start(t, testserver.WithFlags("-auth.enabled", "-etcd.endpoints", etcd, "-node.name", "a1"))
	n2 := testserver.Start(t, testserver.WithFlags("-auth.enabled", "-etcd.endpoints", etcd, "-node.name", "a2"))
	ctx := context.Background()
	token := unscopedToken(t, n1, "Default", "admin", adminPassword)
	admin := bearer(ctx, token)
	if _, err := n2.Queues().CreateQueue(admin, &dmsv1.CreateQueueRequest{Parent: "projects/" + server.DefaultProject, Queue: &dmsv1.Queue{DisplayName: "orders"}}); err != nil {
		t.Fatalf("node 1's token on node 2: %v", err)
	}
	key, err := dmsv1.NewIdentityServiceClient(n2.Conn).CreateAccessKey(admin, &dmsv1.CreateAccessKeyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	list := func(s *testserver.Server) int {
		req, _ := http.NewRequest("GET", "http://"+s.HTTPAddr+"/v1.0/"+server.DefaultProject+"/queues", nil)
		req.Header.Set("Content-Type", "application/json")
		signSDK(req, nil, key.GetAccessKey().GetAccessKey(), key.GetSecretKey(), time.Now())
		code, _ := do(t, req)
		return code
	}
	// Node 1 learns of the key through its etcd watch.
	eventually(t, func() bool { return list(n1) == http.StatusOK }, "the key made on node 2 works on node 1")
	if _, err := dmsv1.NewIdentityServiceClient(n1.Conn).DeleteAccessKey(admin, &dmsv1.DeleteAccessKeyRequest{AccessKey: key.GetAccessKey().GetAccessKey()}); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return list(n2) == http.StatusUnauthorized }, "the key revoked on node 1 is refused on node 2")
	if _, err := n2.Queues().ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: "projects/" + server.DefaultProject}); rpcstatus.Reason(err) != "UNAUTHENTICATED" {
		t.Fatalf("anonymous on node 2: %v", err)
	}
}

// eventually polls cond until it holds, for what another node learns
// through its etcd watch; it fails the test after a generous bound.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
