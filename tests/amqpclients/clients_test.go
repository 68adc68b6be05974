package amqpclients_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendms/dms/services/testserver"
)

// Every client's scenario runs against a real dmsd and its result is
// checked; with DMS_AMQP_RABBITMQ=HOST:PORT (run.sh starts Debian's
// rabbitmq-server there) TestDifferential runs each scenario against
// RabbitMQ too and compares the two results: a difference is a failure
// unless it is one of the deliberate ones the README lists (deliberate
// below).

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

// decode parses a client's JSON line into a fresh value of T.
func decode[T any](t *testing.T, out string) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal([]byte(out), &v), out)
	return v
}

// A scenario runs one client against the broker at addr with the given
// queue name and returns what it saw; check says whether that is right.
type scenario struct {
	name  string
	run   func(t *testing.T, addr, queue string) any
	check func(t *testing.T, res any)
}

type pikaBlocking struct {
	Received    []string
	Redelivered int
	Unroutable  bool
	Get         string
	Left        int
}

type pikaSelect struct{ Published, Acked, Received int }

type javaResult struct {
	Received, Redelivered int
	Returned              string
}

type kombuResult struct {
	Received    []int
	Redelivered int
	Returned    []string
	Get         string
	Left        int
}

// javaClasses holds the compiled Java client for every test of the run;
// TestMain removes it.
var javaClasses string

func TestMain(m *testing.M) {
	code := m.Run()
	if javaClasses != "" {
		_ = os.RemoveAll(javaClasses)
	}
	os.Exit(code)
}

func scenarios(t *testing.T) []scenario {
	return []scenario{
		{
			name: "pika-blocking",
			run: func(t *testing.T, addr, queue string) any {
				return decode[pikaBlocking](t, run(t, tool(t, "DMS_AMQP_PYTHON"), "python/pika_client.py", "blocking", addr, queue))
			},
			check: func(t *testing.T, r any) {
				res := r.(pikaBlocking)
				var want []string
				for i := range 20 {
					want = append(want, fmt.Sprintf("m%d", i))
				}
				require.ElementsMatch(t, want, res.Received)
				require.Equal(t, 1, res.Redelivered, "the nacked message comes back once, marked redelivered")
				require.True(t, res.Unroutable, "a mandatory publish to no queue raises UnroutableError (basic.return before the ack)")
				require.Equal(t, "by-get", res.Get)
				require.Zero(t, res.Left)
			},
		},
		{
			name: "pika-select",
			run: func(t *testing.T, addr, queue string) any {
				return decode[pikaSelect](t, run(t, tool(t, "DMS_AMQP_PYTHON"), "python/pika_client.py", "select", addr, queue))
			},
			check: func(t *testing.T, r any) {
				require.Equal(t, pikaSelect{50, 50, 50}, r.(pikaSelect))
			},
		},
		{
			name: "java-amqp-client",
			run: func(t *testing.T, addr, queue string) any {
				libs := tool(t, "DMS_AMQP_JAVA_LIBS")
				cp := filepath.Join(libs, "*")
				if javaClasses == "" {
					dir, err := os.MkdirTemp("", "amqpclients-java-")
					require.NoError(t, err)
					run(t, "javac", "-d", dir, "-cp", cp, "java/AmqpClient.java")
					javaClasses = dir
				}
				host, port, err := net.SplitHostPort(addr)
				require.NoError(t, err)
				return decode[javaResult](t, run(t, "java", "-XX:TieredStopAtLevel=1", "-cp", javaClasses+string(os.PathListSeparator)+cp, "AmqpClient", host, port, queue))
			},
			check: func(t *testing.T, r any) {
				res := r.(javaResult)
				require.Equal(t, 30, res.Received)
				require.Equal(t, 1, res.Redelivered)
				require.True(t, strings.HasSuffix(res.Returned, "-missing"), res.Returned)
			},
		},
		{
			name: "kombu",
			run: func(t *testing.T, addr, queue string) any {
				return decode[kombuResult](t, run(t, tool(t, "DMS_AMQP_PYTHON"), "python/kombu_client.py", addr, queue))
			},
			check: func(t *testing.T, r any) {
				res := r.(kombuResult)
				require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, res.Received)
				require.Equal(t, 1, res.Redelivered, "the requeued message comes back once, marked redelivered")
				require.Equal(t, []string{"invoices.new"}, res.Returned, "the mandatory message that routes nowhere is returned")
				require.Equal(t, "by-get", res.Get)
				require.Zero(t, res.Left)
			},
		},
		{
			name:  "amqp091-go",
			run:   func(t *testing.T, addr, queue string) any { return amqp091Scenario(t, addr, queue) },
			check: checkAmqp091,
		},
	}
}

// TestClients runs every client against dmsd.
func TestClients(t *testing.T) {
	srv := testserver.Start(t)
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			sc.check(t, sc.run(t, srv.AMQPAddr, strings.ReplaceAll(sc.name, ".", "_")))
		})
	}
}

// deliberate lists the differences from RabbitMQ that the README gives
// as deliberate, by scenario; each is a function that makes the two
// results comparable. None so far.
var deliberate = map[string]func(dms, rabbit any) (any, any){}

// TestDifferential runs every scenario against RabbitMQ and against dmsd,
// with the same names, and compares what the clients saw.
func TestDifferential(t *testing.T) {
	rabbit := os.Getenv("DMS_AMQP_RABBITMQ")
	if rabbit == "" {
		t.Skip("DMS_AMQP_RABBITMQ is not set: run.sh sets it when it could start rabbitmq-server")
	}
	srv := testserver.Start(t)
	for _, sc := range scenarios(t) {
		t.Run(sc.name, func(t *testing.T) {
			queue := "diff-" + strings.ReplaceAll(sc.name, ".", "_")
			want := sc.run(t, rabbit, queue)
			// RabbitMQ's result must pass the check too: otherwise the
			// check, not dmsd, is wrong.
			sc.check(t, want)
			got := sc.run(t, srv.AMQPAddr, queue)
			if f := deliberate[sc.name]; f != nil {
				got, want = f(got, want)
			}
			if !reflect.DeepEqual(want, got) {
				t.Errorf("%s: dmsd and RabbitMQ differ\nRabbitMQ: %+v\ndmsd:     %+v", sc.name, want, got)
			}
		})
	}
}
