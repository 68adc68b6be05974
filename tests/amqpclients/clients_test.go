package amqpclients_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/testserver"
)

// tool returns a client installed by run.sh, named by env.
func tool(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run tests/amqpclients/run.sh (make amqp-clients-test), which installs the AMQP clients", env)
	}
	return p
}

// run runs a client to its end and returns its standard output.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s\nstderr:\n%s\nstdout:\n%s", name, strings.Join(args, " "), stderr.String(), out)
	return string(out)
}

func TestPika(t *testing.T) {
	python := tool(t, "DMS_AMQP_PYTHON")
	srv := testserver.Start(t)

	t.Run("blocking", func(t *testing.T) {
		var res struct {
			Received    []string
			Redelivered int
			Unroutable  bool
			Get         string
			Left        int
		}
		out := run(t, python, "python/pika_client.py", "blocking", srv.AMQPAddr, "pika-blocking")
		require.NoError(t, json.Unmarshal([]byte(out), &res), out)
		var want []string
		for i := range 20 {
			want = append(want, fmt.Sprintf("m%d", i))
		}
		require.ElementsMatch(t, want, res.Received)
		require.Equal(t, 1, res.Redelivered, "the nacked message comes back once, marked redelivered")
		require.True(t, res.Unroutable, "a mandatory publish to no queue raises UnroutableError (basic.return before the ack)")
		require.Equal(t, "by-get", res.Get)
		require.Zero(t, res.Left)
	})
	t.Run("select", func(t *testing.T) {
		var res struct{ Published, Acked, Received int }
		out := run(t, python, "python/pika_client.py", "select", srv.AMQPAddr, "pika-select")
		require.NoError(t, json.Unmarshal([]byte(out), &res), out)
		require.Equal(t, struct{ Published, Acked, Received int }{50, 50, 50}, res)
	})
}

func TestJavaClient(t *testing.T) {
	libs := tool(t, "DMS_AMQP_JAVA_LIBS")
	srv := testserver.Start(t)
	classes := t.TempDir()
	cp := filepath.Join(libs, "*")
	run(t, "javac", "-d", classes, "-cp", cp, "java/AmqpClient.java")
	host, port, err := net.SplitHostPort(srv.AMQPAddr)
	require.NoError(t, err)
	var res struct {
		Received, Redelivered int
		Returned              string
	}
	out := run(t, "java", "-XX:TieredStopAtLevel=1", "-cp", classes+string(os.PathListSeparator)+cp, "AmqpClient", host, port, "java-queue")
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	require.Equal(t, 30, res.Received)
	require.Equal(t, 1, res.Redelivered)
	require.Equal(t, "java-queue-missing", res.Returned)
}
