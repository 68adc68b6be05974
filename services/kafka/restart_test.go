package kafka_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestProducesSurviveARestart produces with acks=all, restarts dmsd on
// the same data directory, and checks that every acknowledged record is
// there, that a retry of a batch sent before the restart is still stored
// once (storage rebuilds the producer's last batches from the log), and
// that producer ids handed out after the restart are new.
func TestProducesSurviveARestart(t *testing.T) {
	srv := startServer(t)
	topic := "durable"
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	sent := produceAll(t, cl, records(topic, 40, "before")...)
	cl.Close()

	c := dialRaw(t, srv.KafkaAddr)
	ip := c.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	require.Zero(t, ip.ErrorCode)
	idem := rawBatch(t, ip.ProducerID, 0, 0, "once-a", "once-b")
	first := produceRaw(c, topic, idem)
	require.Zero(t, first.ErrorCode)
	require.Equal(t, int64(len(sent)), first.BaseOffset)

	srv.Restart(t)

	c = dialRaw(t, srv.KafkaAddr)
	retry := produceRaw(c, topic, idem)
	require.Zero(t, retry.ErrorCode)
	require.Equal(t, first.BaseOffset, retry.BaseOffset, "the retry is answered with the first write's offset")
	after := c.roundTrip(&kmsg.InitProducerIDRequest{Version: 4, ProducerID: -1, ProducerEpoch: -1}).(*kmsg.InitProducerIDResponse)
	require.Zero(t, after.ErrorCode)
	require.Greater(t, after.ProducerID, ip.ProducerID)
	require.Equal(t, int64(len(sent)+2), highWatermark(t, c, topic))

	got := consumeN(t, srv.KafkaAddr, topic, []int32{0}, len(sent)+2)
	for i, s := range sent {
		require.Equal(t, string(s.Value), string(got[i].Value))
		require.Equal(t, s.Offset, got[i].Offset)
	}
	require.Equal(t, "once-a", string(got[len(sent)].Value))
	require.Equal(t, "once-b", string(got[len(sent)+1].Value))
}
