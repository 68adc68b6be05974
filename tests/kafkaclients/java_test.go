package kafkaclients_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
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
// synchronously and resuming at its commits, AdminClient creating,
// describing, listing and deleting a topic, listing and describing the
// group and its offsets, describing configs and adding partitions, and
// offsets looked up by time.
func TestJavaKafkaClients(t *testing.T) {
	cp := compileJava(t)
	srv := startServer(t)
	addr := srv.KafkaAddr

	t.Run("admin", func(t *testing.T) {
		var res struct {
			Partitions        int
			Listed            bool
			ListedAfterDelete bool   `json:"listed_after_delete"`
			HTMode            string `json:"ht_mode"`
			Compact           string
		}
		javaClient(t, cp, &res, "admin", addr, "java-admin")
		require.Equal(t, 3, res.Partitions)
		require.True(t, res.Listed)
		require.False(t, res.ListedAfterDelete)
		require.Equal(t, "KAFKA_HT", res.HTMode, "dms.queue.mode chooses the queue mode")
		require.Equal(t, "org.apache.kafka.common.errors.InvalidConfigurationException", res.Compact, "DMS queues are not compacted")
		q := queueNamed(t, srv, "java-admin-ht")
		require.Equal(t, dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT, q.GetMode())
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
		requireCommittedToEnd(t, addr, group, topic)
		javaClient(t, cp, &res, "produce", addr, topic, "20", "h", "gzip")
		javaClient(t, cp, &got, "consume", addr, topic, "20", group)
		require.Equal(t, expectedValues("h", 20), valueSet(t, got.Values), "the group resumes at its commits")

		var seen struct {
			Listed         bool
			State          string
			Members        int
			Committed      int64
			RetentionMs    string `json:"retention_ms"`
			Partitions     int
			OffsetAt0      int64 `json:"offset_at_0"`
			OffsetInAnHour int64 `json:"offset_in_an_hour"`
		}
		javaClient(t, cp, &seen, "inspect", addr, topic, group)

		require.True(t, seen.Listed, "ListGroups has the group")
		require.Equal(t, "Empty", seen.State, "its members left")
		require.Zero(t, seen.Members)
		require.Equal(t, int64(n+20), seen.Committed)
		require.NotEmpty(t, seen.RetentionMs)
		require.Equal(t, 4, seen.Partitions, "CreatePartitions added one")
		require.Zero(t, seen.OffsetAt0, "the first record is at or after time 0")
		require.EqualValues(t, -1, seen.OffsetInAnHour, "no record an hour from now")

		var ga struct {
			ResetP0           int64  `json:"reset_p0"`
			ResetP1           int64  `json:"reset_p1"`
			P1AfterDelete     bool   `json:"p1_after_delete"`
			EarliestP0        int64  `json:"earliest_p0"`
			LatestP0          int64  `json:"latest_p0"`
			DeleteRecords     string `json:"delete_records"`
			ListedAfterDelete bool   `json:"listed_after_delete"`
		}
		javaClient(t, cp, &ga, "groupadmin", addr, topic, group)
		require.EqualValues(t, 1, ga.ResetP0, "offsets reset by the admin client")
		require.EqualValues(t, 2, ga.ResetP1)
		require.False(t, ga.P1AfterDelete, "OffsetDelete removed partition 1's offset")
		require.Zero(t, ga.EarliestP0)
		require.Equal(t, endOffsets(t, addr, topic)[0], ga.LatestP0)
		require.Equal(t, "org.apache.kafka.common.errors.PolicyViolationException", ga.DeleteRecords, "DMS refuses DeleteRecords")
		require.False(t, ga.ListedAfterDelete, "the group is deleted")
	})

	t.Run("cooperative rebalance", func(t *testing.T) {
		const topic, group, n = "java-coop", "java-coop-members", 600
		_, err := admin(t, addr).CreateTopic(ctxT(t), 6, 1, nil, topic)
		require.NoError(t, err)
		var res produced
		javaClient(t, cp, &res, "produce", addr, topic, fmt.Sprint(n), "c", "lz4")
		var got struct {
			MembersAssigned int `json:"members_assigned"`
			Values          []string
		}
		javaClient(t, cp, &got, "cooperative", addr, topic, fmt.Sprint(n), group)
		union := map[string]bool{}
		for _, v := range got.Values {
			union[v] = true
		}
		require.Equal(t, expectedValues("c", n), union, "every record consumed (a record may come twice around a rebalance)")
		require.Equal(t, 2, got.MembersAssigned, "both members were given partitions")
		requireCommittedToEnd(t, addr, group, topic)
	})

	t.Run("transactions refused", func(t *testing.T) {
		var res struct{ Refused string }
		javaClient(t, cp, &res, "transactions", addr, "java-tx")
		require.Equal(t, "org.apache.kafka.common.errors.TransactionalIdAuthorizationException", res.Refused,
			"initTransactions fails at once with the error DMS answers, not after max.block.ms")
	})

	t.Run("acks 0 and 1", func(t *testing.T) {
		const topic, n = "java-acks", 50
		var res produced
		javaClient(t, cp, &res, "acks", addr, topic, fmt.Sprint(n), "a")
		var got []string
		for _, r := range readAll(t, addr, topic, 2*n) {
			got = append(got, string(r.Value))
		}
		want := map[string]bool{}
		for _, acks := range []string{"0", "1"} {
			for v := range expectedValues("a-"+acks, n) {
				want[v] = true
			}
		}
		require.Equal(t, want, valueSet(t, got))
	})
	t.Run("large records and small fetch limits", func(t *testing.T) {
		var res struct {
			Consumed int
			Intact   bool
		}
		_, err := admin(t, addr).CreateTopic(ctxT(t), 1, 1, nil, "java-large")
		require.NoError(t, err)
		javaClient(t, cp, &res, "large", addr, "java-large", "4", fmt.Sprint(900<<10))
		require.Equal(t, 4, res.Consumed, "each fetch returns at least the first batch, however large")
		require.True(t, res.Intact)
	})

	t.Run("static member", func(t *testing.T) {
		const topic, group = "java-static", "java-static-members"
		_, err := admin(t, addr).CreateTopic(ctxT(t), 2, 1, nil, topic)
		require.NoError(t, err)
		var res produced
		javaClient(t, cp, &res, "produce", addr, topic, "40", "s", "none")
		type run struct {
			Generation int
			Values     []string
		}
		var first, second run
		javaClient(t, cp, &first, "static", addr, topic, "40", group, "instance-1")
		require.Equal(t, expectedValues("s", 40), valueSet(t, first.Values))
		javaClient(t, cp, &res, "produce", addr, topic, "10", "t", "none")
		// The member comes back within its session: the group does not
		// rebalance, and it resumes at its commits.
		javaClient(t, cp, &second, "static", addr, topic, "10", group, "instance-1")
		require.Equal(t, expectedValues("t", 10), valueSet(t, second.Values))
		require.Equal(t, first.Generation, second.Generation, "a static member's return keeps the generation")
		described, err := admin(t, addr).DescribeGroups(ctxT(t), group)
		require.NoError(t, err)
		require.Equal(t, "Stable", described[group].State)
		require.Len(t, described[group].Members, 1)
		require.Equal(t, "instance-1", *described[group].Members[0].InstanceID)
	})

	t.Run("KIP-848 consumer refused", func(t *testing.T) {
		var res struct{ Refused string }
		javaClient(t, cp, &res, "kip848", addr, "java-kip848")
		require.Equal(t, "org.apache.kafka.common.errors.UnsupportedVersionException", res.Refused,
			"group.protocol=consumer fails at the first poll: DMS serves classic groups, not ConsumerGroupHeartbeat")
	})
}
