package dmsclients

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

const adminPassword = "dms-clients-admin-password"

type result struct {
	Name   string          `json:"name"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
}

// python runs clients.py with the pinned clients' interpreter.
func python(t *testing.T, args ...string) map[string]result {
	t.Helper()
	py := os.Getenv("DMS_CLIENTS_PYTHON")
	if py == "" {
		t.Skip("DMS_CLIENTS_PYTHON is not set: run tests/dmsclients/run.sh (make dms-clients-test)")
	}
	cmd := exec.Command(py, append([]string{"python/clients.py"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("clients.py %v: %v\n%s\n%s", args, err, out, stderr.String())
	}
	results := map[string]result{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("clients.py printed %q: %v", sc.Text(), err)
		}
		results[r.Name] = r
	}
	return results
}

func startAuth(t *testing.T) *testserver.Server {
	t.Setenv("DMS_ADMIN_PASSWORD", adminPassword)
	return testserver.Start(t, testserver.WithFlags("-auth.enabled"))
}

func want(t *testing.T, results map[string]result, name string, status int, body string) {
	t.Helper()
	r, ok := results[name]
	if !ok {
		t.Errorf("%s: not run", name)
		return
	}
	if r.Status != status || !strings.Contains(string(r.Body), body) {
		t.Errorf("%s: %d %s, want %d with %s", name, r.Status, r.Body, status, body)
	}
}

// The Huawei Cloud SDK's signer signs every DMS call of a produce and
// consume round; a wrong SK and a stale X-Sdk-Date are refused with DMS's
// codes.
func TestHuaweiCloudSDKSignedRequests(t *testing.T) {
	s := startAuth(t)
	ctx := context.Background()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":%q,"domain":{"name":"Default"}}}}}}`, adminPassword)
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	token := resp.Header.Get("X-Subject-Token")
	key, err := dmsv1.NewIdentityServiceClient(s.Conn).CreateAccessKey(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), &dmsv1.CreateAccessKeyRequest{Description: "huaweicloudsdkcore"})
	if err != nil {
		t.Fatal(err)
	}
	results := python(t, "aksk", s.HTTPAddr, server.DefaultProject, key.GetAccessKey().GetAccessKey(), key.GetSecretKey())
	want(t, results, "create_queue", http.StatusCreated, `"name":"hw-orders"`)
	want(t, results, "list_queues", http.StatusOK, `"hw-orders"`)
	want(t, results, "create_group", http.StatusCreated, `"billing"`)
	want(t, results, "send", http.StatusCreated, `"messages"`)
	want(t, results, "consume", http.StatusOK, `"order":42`)
	want(t, results, "ack", http.StatusOK, `"success":1`)
	want(t, results, "wrong_sk", http.StatusUnauthorized, `"error_code":"10240101"`)
	want(t, results, "stale_date", http.StatusUnauthorized, `"error_code":"10240102"`)
}

// keystoneauth1 authenticates with the Keystone endpoint, finds the DMS
// endpoint in the token's catalog and calls it with X-Auth-Token; another
// project's URL is refused.
func TestKeystoneauth(t *testing.T) {
	s := startAuth(t)
	results := python(t, "keystone", s.HTTPAddr, server.DefaultProject, adminPassword)
	want(t, results, "token", http.StatusOK, `true`)
	want(t, results, "endpoint", http.StatusOK, s.HTTPAddr+"/v1.0/"+server.DefaultProject)
	want(t, results, "create_queue", http.StatusCreated, `"name":"ks-orders"`)
	want(t, results, "list_queues", http.StatusOK, `"ks-orders"`)
	// A project that is not the token's (nor registered): 403 with DMS's permission code.
	want(t, results, "other_project", http.StatusForbidden, `"error_code":"10240309"`)
}
