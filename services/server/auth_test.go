package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/server"
	"github.com/opendms/dms/services/testserver"
)

const adminPassword = "correct-horse-battery-staple"

// startAuth starts a dmsd with authentication on and admin's password
// from the environment.
func startAuth(t *testing.T, opts ...testserver.Option) *testserver.Server {
	t.Setenv("DMS_ADMIN_PASSWORD", adminPassword)
	return testserver.Start(t, append([]testserver.Option{testserver.WithFlags("-auth.enabled")}, opts...)...)
}

// keystoneToken gets a token as a DMS client does, scoped to a project by id.
func keystoneToken(t *testing.T, s *testserver.Server, domain, user, password, project string) (string, map[string]any, int) {
	t.Helper()
	body := fmt.Sprintf(`{"auth":{"identity":{"methods":["password"],"password":{"user":{"name":%q,"password":%q,"domain":{"name":%q}}}},"scope":{"project":{"id":%q}}}}`, user, password, domain, project)
	resp, err := http.Post("http://"+s.HTTPAddr+"/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.Header.Get("X-Subject-Token"), out, resp.StatusCode
}

// call makes an HTTP request with headers and returns status and body.
func call(t *testing.T, method, url string, body string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}

func bearer(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// signSDK signs a request as huaweicloud-sdk-go-v3's core/auth/signer does
// (SDK-HMAC-SHA256), written out here apart from the server's verifier so
// that a shared mistake cannot hide.
func signSDK(req *http.Request, body []byte, ak, sk string, at time.Time) {
	date := at.UTC().Format("20060102T150405Z")
	req.Header.Set("X-Sdk-Date", date)
	headers := map[string]string{"content-type": req.Header.Get("Content-Type"), "x-sdk-date": date, "host": req.URL.Host}
	var names []string
	for k := range headers {
		names = append(names, k)
	}
	sort.Strings(names)
	esc := func(s string) string {
		var b strings.Builder
		for _, c := range []byte(s) {
			if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || strings.IndexByte("_-~.", c) >= 0 {
				b.WriteByte(c)
			} else {
				fmt.Fprintf(&b, "%%%02X", c)
			}
		}
		return b.String()
	}
	var segs []string
	for _, s := range strings.Split(req.URL.Path, "/") {
		segs = append(segs, esc(s))
	}
	uri := strings.Join(segs, "/")
	if !strings.HasSuffix(uri, "/") {
		uri += "/"
	}
	q := req.URL.Query()
	var keys []string
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var pairs []string
	for _, k := range keys {
		vs := q[k]
		sort.Strings(vs)
		for _, v := range vs {
			pairs = append(pairs, esc(strings.ToLower(k))+"="+esc(v))
		}
	}
	var canonHeaders []string
	for _, n := range names {
		canonHeaders = append(canonHeaders, n+":"+strings.TrimSpace(headers[n]))
	}
	bodySum := sha256.Sum256(body)
	canonical := fmt.Sprintf("%s\n%s\n%s\n%s\n%s\n%s", req.Method, uri, strings.Join(pairs, "&"), strings.Join(canonHeaders, "\n")+"\n", strings.Join(names, ";"), hex.EncodeToString(bodySum[:]))
	crSum := sha256.Sum256([]byte(canonical))
	sts := fmt.Sprintf("SDK-HMAC-SHA256\n%s\n%x", date, crSum)
	m := hmac.New(sha256.New, []byte(sk))
	m.Write([]byte(sts))
	req.Header.Set("Authorization", fmt.Sprintf("SDK-HMAC-SHA256 Access=%s, SignedHeaders=%s, Signature=%x", ak, strings.Join(names, ";"), m.Sum(nil)))
}

func TestAuthKeystoneTokenAndDMSRest(t *testing.T) {
	s := startAuth(t)
	project := server.DefaultProject
	base := "http://" + s.HTTPAddr + "/v1.0/" + project

	if code, body := call(t, "GET", base+"/queues", "", nil); code != http.StatusUnauthorized || body["error_code"] != "10240103" {
		t.Fatalf("anonymous list: %d %v, want 401 10240103", code, body)
	}
	token, tokBody, code := keystoneToken(t, s, "Default", "admin", adminPassword, project)
	if code != http.StatusCreated || token == "" {
		t.Fatalf("POST /v3/auth/tokens: %d %v", code, tokBody)
	}
	tok := tokBody["token"].(map[string]any)
	if tok["project"].(map[string]any)["id"] != project || tok["user"].(map[string]any)["name"] != "admin" || tok["expires_at"] == "" {
		t.Fatalf("token body: %v", tok)
	}
	catalog, _ := json.Marshal(tok["catalog"])
	if !strings.Contains(string(catalog), `"type":"dms"`) || !strings.Contains(string(catalog), s.HTTPAddr+"/v1.0/"+project) {
		t.Fatalf("catalog names no DMS endpoint of this server: %s", catalog)
	}
	// Discovery and validation, as keystoneauth does them.
	if code, body := call(t, "GET", "http://"+s.HTTPAddr+"/v3", "", nil); code != http.StatusOK || body["version"].(map[string]any)["id"] != "v3.14" {
		t.Fatalf("GET /v3: %d %v", code, body)
	}
	if code, body := call(t, "GET", "http://"+s.HTTPAddr+"/v3/auth/tokens", "", map[string]string{"X-Auth-Token": token, "X-Subject-Token": token}); code != http.StatusOK || body["token"].(map[string]any)["project"].(map[string]any)["id"] != project {
		t.Fatalf("validate a token: %d %v", code, body)
	}
	if code, _ := call(t, "GET", "http://"+s.HTTPAddr+"/v3/auth/tokens", "", map[string]string{"X-Auth-Token": token, "X-Subject-Token": token[:len(token)-2]}); code != http.StatusNotFound {
		t.Fatalf("validate a forged token: %d", code)
	}
	if _, _, code := keystoneToken(t, s, "Default", "admin", "wrong-password-here", project); code != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d, want 401", code)
	}
	hdr := map[string]string{"X-Auth-Token": token}
	if code, body := call(t, "POST", base+"/queues", `{"name":"orders"}`, hdr); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("create queue with token: %d %v", code, body)
	}
	if code, body := call(t, "GET", base+"/queues", "", map[string]string{"X-Auth-Token": token + "x"}); code != http.StatusUnauthorized || body["error_code"] != "10240101" {
		t.Fatalf("forged token: %d %v, want 401 10240101", code, body)
	}

	// Profiles are for the operator's administrators with an unscoped
	// credential; health and the OpenAPI document stay open.
	if code, _ := call(t, "GET", "http://"+s.HTTPAddr+"/debug/pprof/", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous pprof: %d", code)
	}
	if code, _ := call(t, "GET", "http://"+s.HTTPAddr+"/debug/pprof/", "", hdr); code != http.StatusForbidden {
		t.Fatalf("pprof with a project-scoped token: %d", code)
	}
	if code, _ := call(t, "GET", "http://"+s.HTTPAddr+"/debug/pprof/", "", map[string]string{"X-Auth-Token": unscopedToken(t, s, "Default", "admin", adminPassword)}); code != http.StatusOK {
		t.Fatalf("pprof for the operator: %d", code)
	}
	for _, open := range []string{"/healthz", "/openapi.json"} {
		if code, _ := call(t, "GET", "http://"+s.HTTPAddr+open, "", nil); code != http.StatusOK {
			t.Fatalf("%s: %d", open, code)
		}
	}

	// The identity API over native REST, with an unscoped token.
	adminREST := map[string]string{"Authorization": "Bearer " + unscopedToken(t, s, "Default", "admin", adminPassword)}
	code, accounts := call(t, "GET", "http://"+s.HTTPAddr+"/v1/accounts", "", adminREST)
	if code != http.StatusOK || len(accounts["accounts"].([]any)) != 1 {
		t.Fatalf("GET /v1/accounts: %d %v", code, accounts)
	}
	account := accounts["accounts"].([]any)[0].(map[string]any)["id"].(string)
	code, user := call(t, "POST", "http://"+s.HTTPAddr+"/v1/accounts/"+account+"/users", `{"user":{"name":"rest-user"},"password":"rest user password"}`, adminREST)
	if code != http.StatusOK {
		t.Fatalf("create user over REST: %d %v", code, user)
	}
	userID := user["user"].(map[string]any)["id"].(string)
	if code, body := call(t, "POST", "http://"+s.HTTPAddr+"/v1/projects/"+project+"/roleBindings:grant", `{"userId":"`+userID+`","role":"ROLE_VIEWER"}`, adminREST); code != http.StatusOK {
		t.Fatalf("grant over REST: %d %v", code, body)
	}
	if code, body := call(t, "POST", "http://"+s.HTTPAddr+"/v1/access:explain", `{"userId":"`+userID+`","action":"GetQueue","resource":"projects/`+project+`/queues/orders"}`, adminREST); code != http.StatusOK || body["allowed"] != true || body["decidedBy"] != "role:viewer@"+project {
		t.Fatalf("explain over REST: %d %v", code, body)
	}
	if code, body := call(t, "GET", "http://"+s.HTTPAddr+"/v1/accounts", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous GET /v1/accounts: %d %v", code, body)
	}
	// A header that grpc-gateway would pass on as the principal assertion
	// is dropped: it neither helps an anonymous caller nor spoils a real one.
	forged := map[string]string{"Grpc-Metadata-Dms-Principal": "Zm9v.YmFy"}
	if code, body := call(t, "GET", "http://"+s.HTTPAddr+"/v1/accounts", "", forged); code != http.StatusUnauthorized || !strings.Contains(fmt.Sprint(body), "UNAUTHENTICATED") {
		t.Fatalf("forged assertion header: %d %v", code, body)
	}
	forged["Authorization"] = adminREST["Authorization"]
	if code, body := call(t, "GET", "http://"+s.HTTPAddr+"/v1/accounts", "", forged); code != http.StatusOK {
		t.Fatalf("forged assertion header beside a real token: %d %v", code, body)
	}

	// The internal listener takes principals only as assertions MACed with
	// the cluster's key: a forged one is refused, as are two.
	internal := dmsv1.NewQueueServiceClient(s.Internal)
	list := &dmsv1.ListQueuesRequest{Parent: "projects/" + project}
	forgedCtx := metadata.AppendToOutgoingContext(context.Background(), "dms-principal", "Zm9v.YmFy")
	if _, err := internal.ListQueues(forgedCtx, list); rpcstatus.Reason(err) != "CREDENTIAL_INVALID" || !strings.Contains(err.Error(), "forged") {
		t.Fatalf("forged assertion on the internal listener: %v", err)
	}
	if _, err := internal.ListQueues(metadata.AppendToOutgoingContext(forgedCtx, "dms-principal", "YmF6.cXV4"), list); rpcstatus.Reason(err) != "CREDENTIAL_INVALID" || !strings.Contains(err.Error(), "2 principal assertions") {
		t.Fatalf("two assertions on the internal listener: %v", err)
	}

	// gRPC with the same token as a bearer.
	ctx := context.Background()
	if _, err := s.Queues().ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: "projects/" + project}); status.Code(err) != codes.Unauthenticated || rpcstatus.Reason(err) != "UNAUTHENTICATED" {
		t.Fatalf("anonymous gRPC: %v", err)
	}
	resp, err := s.Queues().ListQueues(bearer(ctx, token), &dmsv1.ListQueuesRequest{Parent: "projects/" + project})
	if err != nil || len(resp.GetQueues()) != 1 {
		t.Fatalf("gRPC with bearer: %v %v", resp, err)
	}
}

func TestAuthAdminPasswordGenerated(t *testing.T) {
	os.Unsetenv("DMS_ADMIN_PASSWORD")
	s := testserver.Start(t, testserver.WithFlags("-auth.enabled"))
	path := filepath.Join(s.DataDir, "admin-password")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
	pw, _ := os.ReadFile(path)
	if _, _, code := keystoneToken(t, s, "Default", "admin", strings.TrimSpace(string(pw)), server.DefaultProject); code != http.StatusCreated {
		t.Fatalf("token with the generated password: %d", code)
	}
	// A restart keeps the identities: the same password works, no new file.
	before, _ := os.ReadFile(path)
	s.Restart(t)
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("the admin password changed on restart")
	}
	if _, _, code := keystoneToken(t, s, "Default", "admin", strings.TrimSpace(string(pw)), server.DefaultProject); code != http.StatusCreated {
		t.Fatalf("token after restart: %d", code)
	}
}

func TestAuthRefusesNonLoopbackWithoutAuth(t *testing.T) {
	cfg := server.Config{}
	if err := cfg.Parse([]string{"-server.http-addr=0.0.0.0:0", "-node.data-dir=" + t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Start(context.Background())
	if err == nil {
		srv.Stop()
		t.Fatal("dmsd started on 0.0.0.0 with authentication off")
	}
	if !strings.Contains(err.Error(), "-server.http-addr=0.0.0.0:0") || !strings.Contains(err.Error(), "-auth.allow-anonymous") {
		t.Fatalf("error does not say which flag and what to do: %v", err)
	}
	// Said in words, it starts.
	s := testserver.Start(t, testserver.WithFlags("-server.http-addr=0.0.0.0:0", "-auth.allow-anonymous"))
	if s.HTTPAddr == "" {
		t.Fatal("no HTTP address")
	}
}

var _ = grpc.WithTransportCredentials
var _ = insecure.NewCredentials
var _ = url.Parse

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func do(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if out == nil {
		out = map[string]any{"raw": string(raw)}
	}
	return resp.StatusCode, out
}
