package dms_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	dms "github.com/opendms/dms/sdk/go"
)

// WithToken against a dmsd with authentication on: a Keystone token from
// its POST /v3/auth/tokens is accepted, a call without it is refused with
// ReasonUnauthenticated.
func TestWithToken(t *testing.T) {
	const password = "sdk-admin-password"
	const project = "0123456789abcdef0123456789abcdef"
	stop, grpcAddr, httpAddr, err := startServer(t.TempDir(), []string{"-auth.enabled"}, []string{"DMS_ADMIN_PASSWORD=" + password})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":"admin","password":%q,"domain":{"name":"Default"}}}},"scope":{"project":{"id":%q}}}}`, password, project)
	resp, err := http.Post("http://"+httpAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var tok map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	token := resp.Header.Get("X-Subject-Token")
	if resp.StatusCode != http.StatusCreated || token == "" {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	ctx := ctxTimeout(t, 20*time.Second)
	anonymous, err := dms.Dial(ctx, grpcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer anonymous.Close()
	if _, err := anonymous.Project(project).CreateQueue(ctx, dms.QueueConfig{Name: "orders"}); dms.ReasonOf(err) != dms.ReasonUnauthenticated {
		t.Fatalf("without a token: %v", err)
	}
	client, err := dms.Dial(ctx, grpcAddr, dms.WithToken(token))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Project(project).CreateQueue(ctx, dms.QueueConfig{Name: "orders"}); err != nil {
		t.Fatalf("with the token: %v", err)
	}
	if _, err := client.Project("ffffffffffffffffffffffffffffffff").CreateQueue(ctx, dms.QueueConfig{Name: "orders"}); dms.ReasonOf(err) != dms.ReasonPermissionDenied {
		t.Fatalf("in an unregistered project: %v", err)
	}
}
