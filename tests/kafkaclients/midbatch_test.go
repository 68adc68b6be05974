package kafkaclients_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/server"
)

// TestGroupsResumeInsideABatch commits group offsets in the middle of a
// stored batch — a gzip batch of a Kafka producer, and a batch of native
// sends — and has kcat (librdkafka 2.0) and kafka-python resume there:
// Fetch returns the batch whole, and each client must yield exactly the
// records from the committed offset on.
func TestGroupsResumeInsideABatch(t *testing.T) {
	kcat := tool(t, "DMS_KAFKA_KCAT")
	srv := startServer(t)
	addr := srv.KafkaAddr
	const n, at = 100, 37

	// One gzip batch (a codec kafka-python has without extras) of n records on one partition.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerBatchCompression(kgo.GzipCompression()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(time.Minute), kgo.MaxBufferedRecords(n))
	require.NoError(t, err)
	defer cl.Close()
	_, err = admin(t, addr).CreateTopic(ctxT(t), 1, 1, nil, "mid-kafka")
	require.NoError(t, err)
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "mid-kafka", Value: fmt.Appendf(nil, "b-%03d", i)})
	}
	// Buffered together and flushed at once: one batch.
	results := make(chan error, n)
	for _, r := range recs {
		cl.Produce(ctxT(t), r, func(_ *kgo.Record, err error) { results <- err })
	}
	require.NoError(t, cl.Flush(ctxT(t)))
	for range n {
		require.NoError(t, <-results)
	}
	require.Equal(t, recs[0].Offset, int64(0))

	// n native sends in one request: one stored batch.
	q := srv.CreateQueue(t, server.DefaultProject, &dmsv1.Queue{DisplayName: "mid-native", Mode: dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, PartitionCount: 1})
	bodies := make([]string, n)
	for i := range bodies {
		bodies[i] = fmt.Sprintf("b-%03d", i)
	}
	srv.Send(t, q, bodies...)

	want := map[string]bool{}
	for i := at; i < n; i++ {
		want[fmt.Sprintf("b-%03d", i)] = true
	}
	for _, topic := range []string{"mid-kafka", "mid-native"} {
		t.Run(topic, func(t *testing.T) {
			for _, group := range []string{topic + "-kcat", topic + "-kafkapython"} {
				offsets := kadm.Offsets{}
				offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: at, LeaderEpoch: -1})
				resp, err := admin(t, addr).CommitOffsets(ctxT(t), group, offsets)
				require.NoError(t, err)
				require.NoError(t, resp.Error())
			}
			out := run(t, kcat, "-b", addr, "-G", topic+"-kcat", "-c", fmt.Sprint(n-at), "-f", "%s\n", topic)
			require.Equal(t, want, valueSet(t, strings.Fields(out)), "kcat")
			var got consumedValues
			pythonClient(t, "kafkapython", "consume", &got, "--bootstrap", addr, "--topic", topic, "--group", topic+"-kafkapython", "--n", fmt.Sprint(n-at))
			require.Equal(t, want, valueSet(t, got.Values), "kafka-python")
		})
	}
}
