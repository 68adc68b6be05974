package kafkaclients_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// compileJava compiles java/KafkaClients.java against the jars of
// java/pom.xml (DMS_KAFKA_JAVA_LIBS, set by run.sh) and returns the class
// path to run it with.
func compileJava(t *testing.T) string {
	t.Helper()
	libs := filepath.Join(tool(t, "DMS_KAFKA_JAVA_LIBS"), "*")
	classes := t.TempDir()
	run(t, "javac", "-d", classes, "-cp", libs, "java/KafkaClients.java")
	return classes + string(filepath.ListSeparator) + libs
}

// javaClient runs a scenario of KafkaClients and decodes its answer. The
// JIT's first tier is enough for a short client run and starts faster.
func javaClient(t *testing.T, classpath string, out any, args ...string) {
	t.Helper()
	stdout := run(t, "java", append([]string{"-XX:TieredStopAtLevel=1", "-cp", classpath, "KafkaClients"}, args...)...)
	require.NoError(t, json.Unmarshal([]byte(stdout), out), "%s", stdout)
}

// TestJavaKafkaClients: Java kafka-clients 4.x, the reference client: an
// idempotent producer with every codec, a consumer group committing
// synchronously and resuming at its commits, and AdminClient creating,
// describing, listing and deleting a topic.
func TestJavaKafkaClients(t *testing.T) {
	cp := compileJava(t)
	srv := startServer(t)
	addr := srv.KafkaAddr

	t.Run("admin", func(t *testing.T) {
		var res struct {
			Partitions        int
			Listed            bool
			ListedAfterDelete bool `json:"listed_after_delete"`
		}
		javaClient(t, cp, &res, "admin", addr, "java-admin")
		require.Equal(t, 3, res.Partitions)
		require.True(t, res.Listed)
		require.False(t, res.ListedAfterDelete)
	})
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run("produce "+codec, func(t *testing.T) {
			topic := "java-" + codec
			const n = 150
			var res produced
			javaClient(t, cp, &res, "produce", addr, topic, fmt.Sprint(n), topic, codec)
			require.Equal(t, n, res.Delivered)
			var got []string
			for _, r := range readAll(t, addr, topic, n) {
				got = append(got, string(r.Value))
				require.Len(t, r.Headers, 1)
			}
			require.Equal(t, expectedValues(topic, n), valueSet(t, got))
			require.Equal(t, int64(n), sum(endOffsets(t, addr, topic)))
		})
	}
	t.Run("consumer group", func(t *testing.T) {
		const topic, group, n = "java-group", "java-members", 200
		_, err := admin(t, addr).CreateTopic(ctxT(t), 3, 1, nil, topic)
		require.NoError(t, err)
		var res produced
		javaClient(t, cp, &res, "produce", addr, topic, fmt.Sprint(n), "g", "zstd")
		var got consumedValues
		javaClient(t, cp, &got, "consume", addr, topic, fmt.Sprint(n), group)
		require.Equal(t, expectedValues("g", n), valueSet(t, got.Values))
		require.Equal(t, endOffsets(t, addr, topic), committed(t, addr, group, topic))
		javaClient(t, cp, &res, "produce", addr, topic, "20", "h", "gzip")
		javaClient(t, cp, &got, "consume", addr, topic, "20", group)
		require.Equal(t, expectedValues("h", 20), valueSet(t, got.Values), "the group resumes at its commits")
	})
}
