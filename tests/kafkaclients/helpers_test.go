package kafkaclients_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/opendms/dms/services/testserver"
)

// startServer starts a dmsd with its Kafka listener on a free port. Groups
// rebalance without Kafka's 3 s initial delay, so that tests take seconds.
func startServer(t testing.TB, flags ...string) *testserver.Server {
	t.Helper()
	srv := testserver.Start(t, testserver.WithFlags(append([]string{"-kafka.group-initial-rebalance-delay", "100ms"}, flags...)...))
	require.NotEmpty(t, srv.KafkaAddr)
	return srv
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// admin is franz-go's admin client, the tests' independent view of what a
// client under test did.
func admin(t testing.TB, addr string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	require.NoError(t, err)
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// committed returns a group's committed offsets of a topic, by partition.
func committed(t testing.TB, addr, group, topic string) map[int32]int64 {
	t.Helper()
	resps, err := admin(t, addr).FetchOffsets(ctxT(t), group)
	require.NoError(t, err)
	require.NoError(t, resps.Error())
	out := map[int32]int64{}
	for _, r := range resps.Sorted() {
		if r.Topic == topic {
			out[r.Partition] = r.At
		}
	}
	return out
}

// endOffsets returns a topic's end offsets by partition.
func endOffsets(t testing.TB, addr, topic string) map[int32]int64 {
	t.Helper()
	ends, err := admin(t, addr).ListEndOffsets(ctxT(t), topic)
	require.NoError(t, err)
	out := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		require.NoError(t, o.Err)
		out[o.Partition] = o.Offset
	})
	return out
}

// requireCommittedToEnd checks that a group that consumed a whole topic
// has committed the end offset of every partition with records; a
// partition without records has no commit or a commit of 0, as the client
// chooses (Java commits every assigned position, librdkafka only what it
// consumed).
func requireCommittedToEnd(t testing.TB, addr, group, topic string, msgAndArgs ...any) {
	t.Helper()
	want := endOffsets(t, addr, topic)
	got := committed(t, addr, group, topic)
	for p, end := range want {
		if end == 0 {
			if at, ok := got[p]; !ok || at == 0 {
				delete(got, p)
			}
			delete(want, p)
		}
	}
	require.Equal(t, want, got, msgAndArgs...)
}

// readAll reads every record of a topic from the start with franz-go,
// without a group, until it has n.
func readAll(t testing.TB, addr, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	require.NoError(t, err)
	defer cl.Close()
	ctx := ctxT(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err(), "read %d of %d records of %s", len(out), n, topic)
		fs.EachError(func(_ string, _ int32, err error) { require.NoError(t, err) })
		out = append(out, fs.Records()...)
	}
	require.Len(t, out, n)
	return out
}

// values returns the distinct values of records as a set, failing on a
// duplicate.
func valueSet(t testing.TB, values []string) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, v := range values {
		require.False(t, set[v], "value %q twice", v)
		set[v] = true
	}
	return set
}

func expectedValues(prefix string, n int) map[string]bool {
	set := map[string]bool{}
	for i := range n {
		set[fmt.Sprintf("%s-%03d", prefix, i)] = true
	}
	return set
}

// tool returns the path of an installed non-Go client given by env, and
// fails the test when it is missing: run.sh installs them.
func tool(t testing.TB, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Fatalf("%s is not set: run tests/kafkaclients/run.sh (make kafka-clients-test), which installs the Kafka clients", env)
	}
	return p
}

// run runs a client subprocess to its end and returns its standard output;
// its standard error goes to the test log on failure.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return runWithInput(t, "", name, args...)
}

// runWithInput is run with input on the client's standard input.
func runWithInput(t testing.TB, input, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.Output()
	require.NoError(t, err, "%s %s\nstderr:\n%s\nstdout:\n%s", name, strings.Join(args, " "), stderr.String(), out)
	return string(out)
}
