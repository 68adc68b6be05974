package kafkaclients_test

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestKcat: kcat from Debian (librdkafka 2.0 there, older than the Python
// wheel's) produces with acks=all and each codec, and consumes with a
// balanced consumer group (-G) whose commits reach the end of the topic;
// lists metadata (-L) and looks offsets up by time (-Q).
func TestKcat(t *testing.T) {
	kcat := tool(t, "DMS_KAFKA_KCAT")
	srv := startServer(t)
	addr := srv.KafkaAddr

	produce := func(t *testing.T, topic, prefix string, n int, codec string) {
		var in strings.Builder
		for i := range n {
			fmt.Fprintf(&in, "k%d:%s-%03d\n", i%5, prefix, i)
		}
		runWithInput(t, in.String(), kcat, "-b", addr, "-P", "-t", topic, "-K", ":", "-z", codec,
			"-X", "acks=all", "-X", "enable.idempotence=true")
	}
	for _, codec := range []string{"none", "gzip", "snappy", "lz4", "zstd"} {
		t.Run("produce "+codec, func(t *testing.T) {
			topic := "kcat-" + codec
			const n = 100
			produce(t, topic, topic, n, codec)
			var got []string
			for _, r := range readAll(t, addr, topic, n) {
				got = append(got, string(r.Value))
			}
			require.Equal(t, expectedValues(topic, n), valueSet(t, got))
		})
	}
	t.Run("consumer group", func(t *testing.T) {
		const topic, group, n = "kcat-group", "kcat-members", 120
		_, err := admin(t, addr).CreateTopic(ctxT(t), 3, 1, nil, topic)
		require.NoError(t, err)
		produce(t, topic, "g", n, "zstd")
		consume := func(n int) []string {
			out := run(t, kcat, "-b", addr, "-G", group, "-c", fmt.Sprint(n), "-f", "%s\n",
				"-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true", topic)
			return strings.Fields(out)
		}
		require.Equal(t, expectedValues("g", n), valueSet(t, consume(n)))
		requireCommittedToEnd(t, addr, group, topic)
		produce(t, topic, "h", 15, "lz4")
		require.Equal(t, expectedValues("h", 15), valueSet(t, consume(15)), "the group resumes at its commits")
	})
	t.Run("two members", func(t *testing.T) {
		const topic, group, n = "kcat-pair", "kcat-pair-members", 400
		_, err := admin(t, addr).CreateTopic(ctxT(t), 4, 1, nil, topic)
		require.NoError(t, err)
		produce(t, topic, "p", n, "snappy")
		// Two members at once; each exits (-e) once its partitions are at
		// their end, and the other then takes them over.
		outs, errs := make([][]byte, 2), make([]error, 2)
		var wg sync.WaitGroup
		for i := range outs {
			wg.Go(func() {
				cmd := exec.CommandContext(ctxT(t), kcat, "-b", addr, "-G", group, "-e", "-f", "%s\n", "-X", "auto.offset.reset=earliest",
					"-X", "heartbeat.interval.ms=200", topic)
				outs[i], errs[i] = cmd.Output()
			})
		}
		wg.Wait()
		union := map[string]bool{}
		for i, out := range outs {
			require.NoError(t, errs[i], "member %d", i)
			for _, v := range strings.Fields(string(out)) {
				union[v] = true
			}
		}
		require.Equal(t, expectedValues("p", n), union)
		requireCommittedToEnd(t, addr, group, topic)
	})
	t.Run("metadata and offsets by time", func(t *testing.T) {
		out := run(t, kcat, "-b", addr, "-L", "-t", "kcat-group")
		require.Contains(t, out, `topic "kcat-group" with 3 partitions`)
		out = run(t, kcat, "-b", addr, "-Q", "-t", "kcat-group:0:0", "-t", fmt.Sprintf("kcat-group:1:%d", time.Now().Add(time.Hour).UnixMilli()))
		require.Contains(t, out, "kcat-group [0] offset 0\n", "the first record is at or after time 0")
		require.Contains(t, out, "kcat-group [1] offset -1\n", "no record an hour from now")
	})
}
