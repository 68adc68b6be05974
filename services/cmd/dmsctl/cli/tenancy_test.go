package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/opendms/dms/services/testserver"
)

const adminPassword = "the admin's long password"

// With authentication on: refused without a credential (exit 3); a
// context with a user and password logs in through the Keystone endpoint;
// users, roles, API tokens, access keys, policies and the audit trail work
// through the tenancy commands, and their dry runs change nothing.
func TestTenancyCommands(t *testing.T) {
	t.Setenv("DMS_ADMIN_PASSWORD", adminPassword)
	s := testserver.Start(t, testserver.WithFlags("-auth.enabled"))
	anon := newCtl(t, s)
	expectCode(t, anon.run("queue", "list"), ExitRefused, "no credential")
	expectCode(t, anon.run("queue", "list", "--token", "forged"), ExitRefused, "a forged token")

	c := &dmsctl{t: t}
	c.ok("config", "set-context", "admin", "--addr", s.GRPCAddr, "--http-addr", s.HTTPAddr, "--user", "admin", "--password", adminPassword)
	c.ok("config", "set-context", "wrong", "--addr", s.GRPCAddr, "--http-addr", s.HTTPAddr, "--user", "admin", "--password", "not it")
	expectCode(t, c.run("queue", "list", "--context", "wrong"), ExitRefused, "a wrong password")

	c.ok("queue", "create", "orders")
	c.ok("queue", "update", "orders", "--description", "shared") // authorized by its name field
	var account string
	for _, a := range c.jsonOf("account", "list")["accounts"].([]any) {
		if a.(map[string]any)["name"] == "Default" {
			account = a.(map[string]any)["id"].(string)
		}
	}
	if account == "" {
		t.Fatal("no Default account listed")
	}
	c.ok("user", "create", "bob", "--account", account, "--password", "bob's long password", "--dry-run")
	if strings.Contains(c.ok("user", "list", "--account", account), "bob") {
		t.Fatal("a dry-run user create created bob")
	}
	bob := c.jsonOf("user", "create", "bob", "--account", account, "--password", "bob's long password")["user"].(map[string]any)["id"].(string)
	c.ok("role", "grant", bob, "viewer", "--dry-run")
	if strings.Contains(c.ok("role", "list"), "bob") {
		t.Fatal("a dry-run grant granted")
	}
	c.ok("role", "grant", bob, "viewer")
	if !strings.Contains(c.ok("role", "list"), "viewer") {
		t.Error("role list does not show bob's role")
	}
	tok := c.jsonOf("token", "create", "--user", bob, "--description", "ci")["token"].(string)
	if tok == "" {
		t.Fatal("no token")
	}
	bobCtl := newCtlAt(t, s.GRPCAddr)
	if out := bobCtl.ok("queue", "list", "--token", tok); !strings.Contains(out, "orders") {
		t.Errorf("bob's queue list:\n%s", out)
	}
	expectCode(t, bobCtl.run("queue", "create", "mine", "--token", tok), ExitRefused, "a viewer creating a queue")
	if ex := c.jsonOf("policy", "explain", bob, "ProduceMessages", "projects/"+defaultProject+"/queues/orders"); ex["allowed"] == true {
		t.Errorf("explain: a viewer may produce: %v", ex)
	}

	key := c.jsonOf("key", "create", "--user", bob)
	ak := key["accessKey"].(map[string]any)["accessKey"].(string)
	if ak == "" || key["secretKey"] == "" {
		t.Fatalf("key create: %v", key)
	}
	c.ok("key", "delete", ak, "--dry-run")
	if !strings.Contains(c.ok("key", "list", "--user", bob), ak) {
		t.Error("a dry-run key delete deleted the key")
	}
	c.ok("key", "delete", ak)
	if strings.Contains(c.ok("key", "list", "--user", bob), ak) {
		t.Error("key delete kept the key")
	}

	// Quotas: a dry run changes nothing; a set keeps the flags not given.
	c.ok("quota", "set", "--max-queues", "7", "--dry-run")
	if q := c.jsonOf("quota", "get"); q["projectSet"] != nil && len(q["projectSet"].([]any)) != 0 {
		t.Errorf("quotas after a dry run: %v", q)
	}
	c.ok("quota", "set", "--max-queues", "7")
	c.ok("quota", "set", "--max-groups-per-queue", "2")
	if q := c.jsonOf("quota", "get")["quotas"].(map[string]any); q["maxQueues"] != float64(7) || q["maxGroupsPerQueue"] != float64(2) {
		t.Errorf("quotas: %v", q)
	}
	expectCode(t, bobCtl.run("quota", "set", "--max-queues", "9", "--token", tok), ExitRefused, "bob setting quotas")

	// The trail has the calls above; its chain is intact.
	var recs []any
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		recs = c.jsonOf("audit", "list", "--action", "/dms.v1.IdentityService/CreateUser")["records"].([]any)
		if len(recs) > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(recs) != 1 || !strings.Contains(recs[0].(map[string]any)["principal"].(string), "user:") {
		t.Errorf("audit list: %v", recs)
	}
	if v := c.jsonOf("audit", "verify"); v["intact"] != true {
		t.Errorf("audit verify: %v", v)
	}
	expectCode(t, bobCtl.run("audit", "list", "--token", tok), ExitRefused, "bob reading the audit trail")
}

func newCtlAt(t *testing.T, addr string) *dmsctl {
	return &dmsctl{t: t, addr: addr}
}

// trace shows a message's life after it was produced and consumed.
func TestTraceCommand(t *testing.T) {
	s := testserver.Start(t)
	c := newCtl(t, s)
	c.ok("queue", "create", "orders")
	c.ok("group", "create", "orders", "billing")
	id := lines(t, c.ok("produce", "orders", "hello", "-o", "json"))[0]["id"].(string)
	c.ok("consume", "orders", "billing", "--max", "1")
	var types []string
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		tr := c.jsonOf("trace", id, "--queue", "orders")["traces"].([]any)
		types = types[:0]
		for _, e := range tr[0].(map[string]any)["events"].([]any) {
			types = append(types, e.(map[string]any)["type"].(string))
		}
		if strings.Contains(strings.Join(types, ","), "ACKED") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := strings.Join(types, ","); !strings.Contains(got, "PRODUCED") || !strings.Contains(got, "ACKED") {
		t.Errorf("trace events: %s", got)
	}
	if out := c.ok("trace", id, "--queue", "orders"); !strings.Contains(out, "billing") || !strings.Contains(out, "acked") {
		t.Errorf("trace table:\n%s", out)
	}
	expectCode(t, c.run("trace", id), ExitUsage, "trace without --queue")
	expectCode(t, c.run("trace", "01a24227-9c90-712a-b9cc-80428139ddd2", "--queue", "orders"), ExitNotFound, "trace of an unknown message")
}

// bench runs loadtest's engine briefly against the server.
func TestBenchCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("a short load")
	}
	s := testserver.Start(t)
	c := newCtl(t, s)
	res := c.jsonOf("bench", "--duration", "1s", "--warmup", "0s", "--producers", "1", "--consumers", "1", "--size", "64", "--partitions", "1", "-q")
	if num(res["sent"]) <= 0 || num(res["received"]) <= 0 || num(res["errors"]) != 0 {
		t.Errorf("bench result: sent %v received %v errors %v (%v)", res["sent"], res["received"], res["errors"], res["first_error"])
	}
	if qs := c.jsonOf("queue", "list")["queues"]; qs != nil && len(qs.([]any)) != 0 {
		t.Errorf("bench left its queue: %v", qs)
	}
	expectCode(t, c.run("bench", "--workload", "nonsense"), ExitUsage, "an unknown workload")
}
