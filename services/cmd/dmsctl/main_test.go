package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opendms/dms/services/testserver"
)

// The built binary, as scripts run it: stdin one message per line, JSON
// lines out, and exit codes from the process.
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "dmsctl")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	s := testserver.Start(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	run := func(stdin string, args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"--addr", s.GRPCAddr}, args...)...)
		cmd.Env = append(os.Environ(), "DMSCTL_CONFIG="+cfg, "DMS_TOKEN=")
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return out.String(), exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return out.String(), 0
	}
	if _, code := run("", "queue", "create", "orders"); code != 0 {
		t.Fatalf("queue create: exit %d", code)
	}
	if _, code := run("", "group", "create", "orders", "billing"); code != 0 {
		t.Fatalf("group create: exit %d", code)
	}
	if _, code := run("first\nsecond\nthird\n", "produce", "orders", "--key", "k"); code != 0 {
		t.Fatalf("produce: exit %d", code)
	}
	out, code := run("", "consume", "orders", "billing", "--max", "3", "-o", "json")
	var bodies []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m struct{ ID, Body string }
		if err := json.Unmarshal([]byte(line), &m); err != nil || m.ID == "" {
			t.Fatalf("consume line %q: %v", line, err)
		}
		bodies = append(bodies, m.Body)
	}
	if code != 0 || strings.Join(bodies, ",") != "first,second,third" {
		t.Errorf("consume: exit %d, bodies %v", code, bodies)
	}
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"queue", "describe", "nope"}, 2},
		{[]string{"queue", "list", "--bogus"}, 1},
		{[]string{"queue", "create", "orders"}, 5},
		{[]string{"help"}, 0},
	} {
		if _, code := run("", tc.args...); code != tc.code {
			t.Errorf("dmsctl %s: exit %d, want %d", strings.Join(tc.args, " "), code, tc.code)
		}
	}
}
