package kafkaclients_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// pythonClient runs a scenario of python/clients.py with the venv's python
// (DMS_KAFKA_PYTHON, set by run.sh) and decodes its JSON answer.
func pythonClient(t *testing.T, client, action string, out any, args ...string) {
	t.Helper()
	python := tool(t, "DMS_KAFKA_PYTHON")
	stdout := run(t, python, append([]string{"python/clients.py", client, action}, args...)...)
	require.NoError(t, json.Unmarshal([]byte(stdout), out), "%s", stdout)
}

type produced struct{ Delivered int }
type consumedValues struct{ Values []string }
type adminResult struct {
	Partitions        int
	ListedAfterDelete bool `json:"listed_after_delete"`
}

// testPythonClient: produce (idempotent, acks=all) with the given codecs
// and check every record with franz-go, consume with a group committing as
// it goes and check the commits, create/describe/delete a topic.
// It returns the Kafka address of the dmsd, for more.
func testPythonClient(t *testing.T, client string, codecs []string) string {
	srv := startServer(t)
	addr := srv.KafkaAddr

	t.Run("admin", func(t *testing.T) {
		var res adminResult
		pythonClient(t, client, "admin", &res, "--bootstrap", addr, "--topic", client+"-admin")
		require.Equal(t, adminResult{Partitions: 3}, res)
		ends, err := admin(t, addr).ListTopics(ctxT(t), client+"-admin")
		require.NoError(t, err)
		require.False(t, ends.Has(client+"-admin"))
	})
	for _, codec := range codecs {
		t.Run("produce "+codec, func(t *testing.T) {
			topic := client + "-" + codec
			const n = 150
			var res produced
			pythonClient(t, client, "produce", &res, "--bootstrap", addr, "--topic", topic, "--prefix", topic, "--n", fmt.Sprint(n), "--compression", codec)
			require.Equal(t, n, res.Delivered)
			var got []string
			for _, r := range readAll(t, addr, topic, n) {
				got = append(got, string(r.Value))
				require.Len(t, r.Headers, 1)
			}
			require.Equal(t, expectedValues(topic, n), valueSet(t, got))
			require.Equal(t, int64(n), sum(endOffsets(t, addr, topic)), "idempotent retries wrote nothing twice")
		})
	}
	t.Run("consumer group", func(t *testing.T) {
		topic, group := client+"-group", client+"-members"
		const n = 200
		var res produced
		pythonClient(t, client, "produce", &res, "--bootstrap", addr, "--topic", topic, "--prefix", "g", "--n", fmt.Sprint(n))
		var got consumedValues
		pythonClient(t, client, "consume", &got, "--bootstrap", addr, "--topic", topic, "--group", group, "--n", fmt.Sprint(n))
		require.Equal(t, expectedValues("g", n), valueSet(t, got.Values))
		requireCommittedToEnd(t, addr, group, topic)

		// The group resumes at its commits: a second run gets only what
		// was produced since.
		pythonClient(t, client, "produce", &res, "--bootstrap", addr, "--topic", topic, "--prefix", "h", "--n", "20")
		pythonClient(t, client, "consume", &got, "--bootstrap", addr, "--topic", topic, "--group", group, "--n", "20")
		require.Equal(t, expectedValues("h", 20), valueSet(t, got.Values))
	})
	return addr
}

func sum(m map[int32]int64) int64 {
	var s int64
	for _, v := range m {
		s += v
	}
	return s
}

// TestConfluentKafkaPython: confluent-kafka (librdkafka bundled in its
// wheel) with every codec, a consumer group and its admin client; then the
// admin client lists and describes the group and its offsets, describes
// topic configs and adds a partition, the consumer looks offsets up by
// time, and two consumers with the cooperative-sticky assignor rebalance
// incrementally.
func TestConfluentKafkaPython(t *testing.T) {
	addr := testPythonClient(t, "confluent", []string{"none", "gzip", "snappy", "lz4", "zstd"})

	t.Run("inspect", func(t *testing.T) {
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
		pythonClient(t, "confluent", "inspect", &seen, "--bootstrap", addr, "--topic", "confluent-group", "--group", "confluent-members")
		require.True(t, seen.Listed, "ListGroups has the group")
		require.Equal(t, "EMPTY", seen.State, "its members left")
		require.Zero(t, seen.Members)
		require.Equal(t, sum(endOffsets(t, addr, "confluent-group")), seen.Committed)
		require.NotEmpty(t, seen.RetentionMs)
		require.Equal(t, 4, seen.Partitions, "CreatePartitions added one")
		require.Zero(t, seen.OffsetAt0)
		require.EqualValues(t, -1, seen.OffsetInAnHour, "no record an hour from now (OFFSET_END)")
	})
	t.Run("cooperative rebalance", func(t *testing.T) {
		const topic, group, n = "confluent-coop", "confluent-coop-members", 600
		_, err := admin(t, addr).CreateTopic(ctxT(t), 6, 1, nil, topic)
		require.NoError(t, err)
		var res produced
		pythonClient(t, "confluent", "produce", &res, "--bootstrap", addr, "--topic", topic, "--prefix", "c", "--n", fmt.Sprint(n), "--compression", "zstd")
		var got struct {
			MembersAssigned int `json:"members_assigned"`
			Values          []string
		}
		pythonClient(t, "confluent", "cooperative", &got, "--bootstrap", addr, "--topic", topic, "--group", group, "--n", fmt.Sprint(n))
		union := map[string]bool{}
		for _, v := range got.Values {
			union[v] = true
		}
		require.Equal(t, expectedValues("c", n), union)
		require.Equal(t, 2, got.MembersAssigned, "both members were given partitions")
		requireCommittedToEnd(t, addr, group, topic)
	})
	t.Run("transactions refused", func(t *testing.T) {
		var res struct {
			Refused   string
			Fatal     bool
			Retriable bool
		}
		pythonClient(t, "confluent", "transactions", &res, "--bootstrap", addr, "--topic", "confluent-tx")
		require.Equal(t, "TRANSACTIONAL_ID_AUTHORIZATION_FAILED", res.Refused)
		require.False(t, res.Retriable)
	})
}

// TestKafkaPython: kafka-python, pure Python (gzip is the codec it has
// without optional packages), and two members of a group rebalancing.
func TestKafkaPython(t *testing.T) {
	addr := testPythonClient(t, "kafkapython", []string{"none", "gzip"})
	t.Run("rebalance", func(t *testing.T) {
		const topic, group, n = "kafkapython-pair", "kafkapython-pair-members", 600
		_, err := admin(t, addr).CreateTopic(ctxT(t), 6, 1, nil, topic)
		require.NoError(t, err)
		var res produced
		pythonClient(t, "kafkapython", "produce", &res, "--bootstrap", addr, "--topic", topic, "--prefix", "p", "--n", fmt.Sprint(n))
		var got struct {
			MembersAssigned int `json:"members_assigned"`
			Values          []string
		}
		pythonClient(t, "kafkapython", "pair", &got, "--bootstrap", addr, "--topic", topic, "--group", group, "--n", fmt.Sprint(n))
		union := map[string]bool{}
		for _, v := range got.Values {
			union[v] = true
		}
		require.Equal(t, expectedValues("p", n), union)
		require.Equal(t, 2, got.MembersAssigned, "both members were given partitions")
		requireCommittedToEnd(t, addr, group, topic)
	})
}
