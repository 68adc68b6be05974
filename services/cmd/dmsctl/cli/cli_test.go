package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/opendms/dms/services/testserver"
)

// dmsctl runs the command tree in-process against a real dmsd, with a
// configuration file of the test's own.
type dmsctl struct {
	t    *testing.T
	addr string
}

type result struct {
	out, err string
	code     int
}

func newCtl(t *testing.T, s *testserver.Server) *dmsctl {
	t.Helper()
	t.Setenv("DMSCTL_CONFIG", filepath.Join(t.TempDir(), "config.yaml"))
	t.Setenv("DMS_TOKEN", "")
	return &dmsctl{t: t, addr: s.GRPCAddr}
}

func (c *dmsctl) runIn(stdin string, args ...string) result {
	c.t.Helper()
	var out, errOut bytes.Buffer
	if c.addr != "" {
		args = append([]string{"--addr", c.addr}, args...)
	}
	code := Main(args, strings.NewReader(stdin), &out, &errOut)
	return result{out: out.String(), err: errOut.String(), code: code}
}

func (c *dmsctl) run(args ...string) result {
	c.t.Helper()
	return c.runIn("", args...)
}

// ok runs a command that must succeed.
func (c *dmsctl) ok(args ...string) string {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("dmsctl %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.out, r.err)
	}
	return r.out
}

// jsonOf runs a command with -o json and decodes its one JSON document.
func (c *dmsctl) jsonOf(args ...string) map[string]any {
	c.t.Helper()
	out := c.ok(append(args, "-o", "json")...)
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		c.t.Fatalf("dmsctl %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
	return v
}

// lines decodes JSON lines.
func lines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var vs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		vs = append(vs, v)
	}
	return vs
}

func num(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case string: // protojson writes int64 as a string
		var n int64
		_ = json.Unmarshal([]byte(x), &n)
		return n
	}
	return -1
}

func expectCode(t *testing.T, r result, code int, what string) {
	t.Helper()
	if r.code != code {
		t.Errorf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.out, r.err)
	}
}

// Queues and groups: every subcommand, their JSON shapes, and dry runs
// that change nothing.
func TestQueueAndGroupCommands(t *testing.T) {
	s := testserver.Start(t)
	c := newCtl(t, s)

	// Dry run first: nothing is created.
	dry := c.jsonOf("queue", "create", "orders", "--partitions", "2", "--dry-run")
	if dry["dryRun"] != true || dry["request"].(map[string]any)["queue"].(map[string]any)["displayName"] != "orders" {
		t.Fatalf("dry-run create: %v", dry)
	}
	expectCode(t, c.run("queue", "describe", "orders"), ExitNotFound, "describe after a dry-run create")

	q := c.jsonOf("queue", "create", "orders", "--partitions", "2", "--dead-letters", "--max-consume-count", "3", "--description", "first")["queue"].(map[string]any)
	if q["displayName"] != "orders" || q["partitionCount"] != float64(2) || q["deadLetterEnabled"] != true || q["id"] == "" {
		t.Fatalf("created queue: %v", q)
	}
	list := c.jsonOf("queue", "list")
	if qs := list["queues"].([]any); len(qs) != 1 || qs[0].(map[string]any)["displayName"] != "orders" {
		t.Fatalf("queue list: %v", list)
	}
	if out := c.ok("queue", "list"); !strings.Contains(out, "NAME") || !strings.Contains(out, "orders") {
		t.Errorf("queue list table:\n%s", out)
	}
	var y map[string]any
	if err := yaml.Unmarshal([]byte(c.ok("queue", "describe", "orders", "-o", "yaml")), &y); err != nil || y["queue"].(map[string]any)["displayName"] != "orders" {
		t.Errorf("describe -o yaml: %v %v", y, err)
	}

	// Update: dry run changes nothing; then the change.
	c.ok("queue", "update", "orders", "--description", "second", "--dry-run")
	if d := c.jsonOf("queue", "describe", "orders")["queue"].(map[string]any)["description"]; d != "first" {
		t.Errorf("description after a dry-run update: %v", d)
	}
	up := c.jsonOf("queue", "update", "orders", "--description", "second", "--max-consume-count", "5", "--partitions", "3")
	if up["description"] != "second" || up["maxConsumeCount"] != float64(5) || up["partitionCount"] != float64(3) {
		t.Errorf("updated: %v", up)
	}
	expectCode(t, c.run("queue", "update", "orders"), ExitUsage, "update without a change")
	expectCode(t, c.run("queue", "update", "orders", "--retention", "1m"), ExitUsage, "update with a bad retention")

	// Groups.
	c.ok("group", "create", "orders", "billing", "--dry-run")
	expectCode(t, c.run("group", "describe", "orders", "billing"), ExitNotFound, "describe after a dry-run group create")
	g := c.jsonOf("group", "create", "orders", "billing")["group"].(map[string]any)
	if g["displayName"] != "billing" {
		t.Fatalf("group: %v", g)
	}
	expectCode(t, c.run("group", "create", "orders", "billing"), ExitConflict, "create an existing group")
	c.ok("produce", "orders", "a", "b", "c", "-q")
	gl := c.jsonOf("group", "list", "orders")["groups"].([]any)
	if len(gl) != 1 || num(gl[0].(map[string]any)["stats"].(map[string]any)["availableMessages"]) != 3 {
		t.Errorf("group list: %v", gl)
	}
	stats := c.jsonOf("queue", "stats", "orders")
	if num(stats["messages"]) != 3 || len(stats["groups"].([]any)) != 1 || num(stats["groups"].([]any)[0].(map[string]any)["backlog"]) != 3 {
		t.Errorf("stats: %v", stats)
	}
	// Seek: to latest empties the backlog; a dry run does not.
	c.ok("group", "seek", "orders", "billing", "--to", "latest", "--dry-run")
	if b := num(c.jsonOf("group", "describe", "orders", "billing")["group"].(map[string]any)["stats"].(map[string]any)["availableMessages"]); b != 3 {
		t.Errorf("backlog after a dry-run seek: %d", b)
	}
	seek := c.jsonOf("group", "seek", "orders", "billing", "--to", "latest")
	if len(seek["positions"].([]any)) != 3 {
		t.Errorf("seek latest: %v", seek)
	}
	if b := num(c.jsonOf("group", "describe", "orders", "billing")["group"].(map[string]any)["stats"].(map[string]any)["availableMessages"]); b != 0 {
		t.Errorf("backlog after seek latest: %d", b)
	}
	c.ok("group", "seek", "orders", "billing", "--to", "earliest")
	c.ok("group", "seek", "orders", "billing", "--to", "1h")
	c.ok("group", "seek", "orders", "billing", "--to", "0:0,1:0")
	expectCode(t, c.run("group", "seek", "orders", "billing", "--to", "sometime"), ExitUsage, "seek to nonsense")
	expectCode(t, c.run("group", "seek", "orders", "billing"), ExitUsage, "seek without --to")

	// Deletes: dry runs keep, then they go.
	c.ok("group", "delete", "orders", "billing", "--dry-run")
	c.ok("group", "describe", "orders", "billing")
	c.ok("group", "delete", "orders", "billing")
	expectCode(t, c.run("group", "describe", "orders", "billing"), ExitNotFound, "describe a deleted group")
	c.ok("queue", "delete", "orders", "--dry-run")
	c.ok("queue", "describe", "orders")
	c.ok("queue", "delete", "orders")
	expectCode(t, c.run("queue", "describe", "orders"), ExitNotFound, "describe a deleted queue")
	expectCode(t, c.run("queue", "delete", "orders", "--dry-run"), ExitNotFound, "dry-run delete of a missing queue")
}

// produce from arguments, stdin and with attributes and tags; consume
// prints each message with its id and acks it unless --no-ack.
func TestProduceAndConsume(t *testing.T) {
	s := testserver.Start(t)
	c := newCtl(t, s)
	c.ok("queue", "create", "orders", "--partitions", "1")
	c.ok("group", "create", "orders", "billing")

	r := c.runIn("", "produce", "orders", "--dry-run", "x", "y")
	expectCode(t, r, 0, "produce --dry-run")
	if q := c.jsonOf("queue", "describe", "orders")["queue"].(map[string]any); num(q["messageCount"]) != 0 {
		t.Fatalf("a dry-run produce stored %v messages", q["messageCount"])
	}

	sent := lines(t, c.ok("produce", "orders", "one", "two", "--attr", "region=eu", "--attr", "n:int=5", "--tag", "new", "-o", "json"))
	if len(sent) != 2 || sent[0]["id"] == "" || sent[1]["offset"] != float64(1) {
		t.Fatalf("produce -o json: %v", sent)
	}
	r = c.runIn("l1\nl2\nl3\n", "produce", "orders", "--batch", "2", "--rate", "1000", "-o", "json")
	expectCode(t, r, 0, "produce from stdin")
	if got := lines(t, r.out); len(got) != 3 {
		t.Fatalf("stdin produce: %v", got)
	}
	expectCode(t, c.run("produce", "orders", "x", "--attr", "bad"), ExitUsage, "produce with a malformed attribute")
	expectCode(t, c.run("produce", "orders", "x", "--tag", "a", "--tag", "b", "--tag", "c", "--tag", "d"), ExitUsage, "four tags")
	expectCode(t, c.run("produce", "nope", "x"), ExitNotFound, "produce to a missing queue")

	// --no-ack: printed with receipt handles, left in flight.
	held := lines(t, c.ok("consume", "orders", "billing", "--max", "1", "--no-ack", "-o", "json"))
	if len(held) != 1 || held[0]["receiptHandle"] == "" || held[0]["id"] != sent[0]["id"] || held[0]["body"] != "one" {
		t.Fatalf("consume --no-ack: %v", held)
	}
	attrs := held[0]["attributes"].(map[string]any)
	if attrs["region"] != "eu" || attrs["n"] != float64(5) || held[0]["tags"].([]any)[0] != "new" {
		t.Errorf("attributes and tags: %v", held[0])
	}
	st := c.jsonOf("group", "describe", "orders", "billing")["group"].(map[string]any)["stats"].(map[string]any)
	if num(st["inFlightMessages"]) != 1 {
		t.Errorf("in flight after --no-ack: %v", st)
	}
	got := lines(t, c.ok("consume", "orders", "billing", "--max", "10", "--wait", "100ms", "-o", "json"))
	if len(got) != 4 {
		t.Fatalf("consume: %d messages: %v", len(got), got)
	}
	for _, m := range got {
		if m["id"] == "" || m["receiptHandle"] != nil {
			t.Errorf("consumed line %v", m)
		}
	}
	st = c.jsonOf("group", "describe", "orders", "billing")["group"].(map[string]any)["stats"].(map[string]any)
	if num(st["consumedMessages"]) != 4 || num(st["inFlightMessages"]) != 1 {
		t.Errorf("after consume: %v", st)
	}
	if out := c.ok("consume", "orders", "billing", "--max", "1", "--wait", "0s"); out != "" {
		t.Errorf("consume with nothing left printed %q", out)
	}
	expectCode(t, c.run("consume", "orders", "billing", "--ack", "maybe"), ExitUsage, "bad --ack")
}

// browse reads without consuming; dlq lists, shows and redrives with a
// result per message, and a dry run changes nothing.
func TestBrowseAndDeadLetters(t *testing.T) {
	s := testserver.Start(t)
	c := newCtl(t, s)
	c.ok("queue", "create", "orders", "--partitions", "2", "--dead-letters", "--max-consume-count", "1")
	c.ok("group", "create", "orders", "billing")
	sent := lines(t, c.ok("produce", "orders", "a", "b", "c", "d", "--tag", "t1", "-o", "json"))
	c.ok("produce", "orders", "e", "--attr", "k=v", "-q")

	all := lines(t, c.ok("browse", "orders", "-o", "json"))
	if len(all) != 5 {
		t.Fatalf("browse: %v", all)
	}
	if got := lines(t, c.ok("browse", "orders", "--tag", "t1", "--limit", "2", "-o", "json")); len(got) != 2 {
		t.Errorf("browse --tag --limit 2: %v", got)
	}
	if got := lines(t, c.ok("browse", "orders", "--attr", "k=v", "-o", "json")); len(got) != 1 || got[0]["body"] != "e" {
		t.Errorf("browse --attr: %v", got)
	}
	if got := lines(t, c.ok("browse", "orders", "--id", sent[2]["id"].(string), "-o", "json")); len(got) != 1 || got[0]["body"] != "c" {
		t.Errorf("browse --id: %v", got)
	}
	p := int(sent[0]["partition"].(float64))
	if got := lines(t, c.ok("browse", "orders", "-p", string(rune('0'+p)), "--offset", "0", "--limit", "1", "-o", "json")); len(got) != 1 || got[0]["partition"] != float64(p) {
		t.Errorf("browse --partition: %v", got)
	}
	if got := lines(t, c.ok("browse", "orders", "--since", "2099-01-01T00:00:00Z", "-o", "json")); len(got) != 0 {
		t.Errorf("browse from 2099: %v", got)
	}
	expectCode(t, c.run("browse", "orders", "-p", "7"), ExitUsage, "browse a partition the queue does not have")
	if b := num(c.jsonOf("group", "describe", "orders", "billing")["group"].(map[string]any)["stats"].(map[string]any)["availableMessages"]); b != 5 {
		t.Errorf("backlog after browsing: %d", b)
	}

	// Fail everything once: with max-consume-count 1 each becomes a dead letter.
	failed := lines(t, c.ok("consume", "orders", "billing", "--max", "5", "--ack", "fail", "-o", "json"))
	if len(failed) != 5 {
		t.Fatalf("consume --ack fail: %v", failed)
	}
	var dead []map[string]any
	for range 100 {
		if dead = lines(t, c.ok("dlq", "list", "orders", "billing", "-o", "json")); len(dead) == 5 {
			break
		}
	}
	if len(dead) != 5 || dead[0]["deadLetter"].(map[string]any)["lastFailureReason"] != "FAILED_BY_CONSUMER" {
		t.Fatalf("dlq list: %v", dead)
	}
	if got := lines(t, c.ok("dlq", "list", "orders", "billing", "--reason", "VISIBILITY_TIMEOUT", "-o", "json")); len(got) != 0 {
		t.Errorf("dlq list --reason VISIBILITY_TIMEOUT: %v", got)
	}
	show := c.jsonOf("dlq", "show", "orders", "billing", dead[0]["id"].(string))
	if show["id"] != dead[0]["id"] || show["deadLetter"] == nil {
		t.Errorf("dlq show: %v", show)
	}
	expectCode(t, c.run("dlq", "show", "orders", "billing", "no-such-id"), ExitNotFound, "dlq show of an unknown id")

	// Dry run: every matching one listed, none redriven.
	would := lines(t, c.ok("dlq", "redrive", "orders", "billing", "--tag", "t1", "--dry-run", "-o", "json"))
	if len(would) != 4 || would[0]["dryRun"] != true {
		t.Fatalf("redrive --dry-run: %v", would)
	}
	if got := lines(t, c.ok("dlq", "list", "orders", "billing", "-o", "json")); len(got) != 5 {
		t.Fatalf("after a dry-run redrive, %d dead letters", len(got))
	}
	done := lines(t, c.ok("dlq", "redrive", "orders", "billing", "--attr", "k=v", "--rate", "10", "-o", "json"))
	if len(done) != 1 || done[0]["redriven"] != true {
		t.Fatalf("redrive --attr k=v: %v", done)
	}
	if got := lines(t, c.ok("dlq", "list", "orders", "billing", "-o", "json")); len(got) != 4 {
		t.Errorf("after redriving one, %d dead letters", len(got))
	}
	back := lines(t, c.ok("consume", "orders", "billing", "--max", "5", "--wait", "100ms", "-o", "json"))
	if len(back) != 1 || back[0]["body"] != "e" {
		t.Errorf("the redriven message: %v", back)
	}
	if out := c.ok("dlq", "redrive", "orders", "billing", "--id", "no-such-id"); out != "" {
		t.Errorf("redrive of nothing printed %q", out)
	}
}

// cluster status; exit codes for usage, not found, unavailable,
// conflict; help and completion; contexts.
func TestClusterExitCodesAndContexts(t *testing.T) {
	s := testserver.Start(t)
	c := newCtl(t, s)
	c.ok("queue", "create", "orders", "--partitions", "2")
	c.ok("produce", "orders", "a", "b", "-q")
	st := c.jsonOf("cluster", "status")
	nodes := st["nodes"].([]any)
	if len(nodes) != 1 || nodes[0].(map[string]any)["alive"] != true || nodes[0].(map[string]any)["name"] != s.NodeName {
		t.Fatalf("cluster status nodes: %v", nodes)
	}
	parts := c.jsonOf("cluster", "status", "--queue", "orders")["partitions"].([]any)
	var hw int64
	for _, p := range parts {
		pm := p.(map[string]any)
		hw += num(pm["highWatermark"])
		if pm["replication"].(map[string]any)["leader"] != s.NodeName {
			t.Errorf("partition %v", pm)
		}
	}
	if len(parts) != 2 || hw != 2 {
		t.Errorf("partitions %v", parts)
	}
	if out := c.ok("cluster", "status"); !strings.Contains(out, s.NodeName) || !strings.Contains(out, "HIGH WATERMARK") {
		t.Errorf("cluster status table:\n%s", out)
	}

	expectCode(t, c.run("queue", "list", "--no-such-flag"), ExitUsage, "unknown flag")
	expectCode(t, c.run("queue", "describe"), ExitUsage, "missing argument")
	expectCode(t, c.run("nonsense"), ExitUsage, "unknown command")
	expectCode(t, c.run("produce"), ExitUsage, "produce without a queue")
	expectCode(t, c.run("cluster", "status", "extra"), ExitUsage, "an argument too many")
	expectCode(t, c.run("queue", "list", "-o", "xml"), ExitUsage, "unknown output")
	expectCode(t, c.run("queue", "describe", "nope"), ExitNotFound, "missing queue")
	expectCode(t, c.run("queue", "create", "orders"), ExitConflict, "existing queue")
	expectCode(t, c.run("queue", "create", "bad name!"), ExitUsage, "invalid name")
	r := c.run("queue", "describe", "nope")
	if !strings.Contains(r.err, "QUEUE_NOT_FOUND") {
		t.Errorf("the error line names no reason: %q", r.err)
	}
	down := &dmsctl{t: t, addr: "127.0.0.1:1"}
	expectCode(t, down.run("queue", "list", "--timeout", "2s"), ExitUnavailable, "nothing listening")
	if r := c.run("help"); r.code != 0 || !strings.Contains(r.out, "queue") || !strings.Contains(r.out, "dlq") {
		t.Errorf("help: %d %s", r.code, r.out)
	}
	if r := c.run("help", "exit-codes"); r.code != 0 || !strings.Contains(r.out, "4  unavailable") {
		t.Errorf("help exit-codes: %d %s", r.code, r.out)
	}
	if r := c.run("completion", "bash"); r.code != 0 || !strings.Contains(r.out, "dmsctl") {
		t.Errorf("completion bash: exit %d", r.code)
	}
	// Completion of queue names asks the server.
	if r := c.run("__complete", "queue", "describe", ""); r.code != 0 || !strings.Contains(r.out, "orders") {
		t.Errorf("queue name completion: %d %q", r.code, r.out)
	}

	// Contexts: the current one supplies the address and project.
	noAddr := &dmsctl{t: t}
	noAddr.ok("config", "set-context", "local", "--addr", s.GRPCAddr, "--project", "p2")
	noAddr.ok("config", "set-context", "elsewhere", "--addr", "127.0.0.1:1")
	if out := noAddr.ok("config", "current-context"); strings.TrimSpace(out) != "local" {
		t.Errorf("current context %q", out)
	}
	noAddr.ok("queue", "create", "in-p2")
	if q := noAddr.jsonOf("queue", "describe", "in-p2")["queue"].(map[string]any); !strings.HasPrefix(q["name"].(string), "projects/p2/") {
		t.Errorf("context project: %v", q["name"])
	}
	noAddr.ok("config", "use-context", "elsewhere")
	expectCode(t, noAddr.run("queue", "list", "--timeout", "2s"), ExitUnavailable, "the other context")
	noAddr.ok("queue", "list", "--context", "local")
	expectCode(t, noAddr.run("queue", "list", "--context", "nope"), ExitUsage, "unknown context")
	if out := noAddr.ok("config", "get-contexts"); !strings.Contains(out, "* ") || !strings.Contains(out, "elsewhere") {
		t.Errorf("get-contexts:\n%s", out)
	}
}
