package kafka_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/IBM/sarama"
	segkafka "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
	"github.com/stretchr/testify/require"
)

// TestSaramaProducesAndConsumes runs Sarama's synchronous producer (acks
// all, each codec) and its partition consumer against the front end: the
// older request versions and Sarama's batch encoding (leader epoch 0, its
// own CRC and compression) go through the same data path.
func TestSaramaProducesAndConsumes(t *testing.T) {
	srv := startServer(t)
	for _, tc := range []struct {
		name  string
		codec sarama.CompressionCodec
	}{{"none", sarama.CompressionNone}, {"gzip", sarama.CompressionGZIP}, {"snappy", sarama.CompressionSnappy}, {"lz4", sarama.CompressionLZ4}, {"zstd", sarama.CompressionZSTD}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "sarama-" + tc.name
			cfg := sarama.NewConfig()
			cfg.Version = sarama.V2_8_0_0
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			cfg.Producer.Return.Successes = true
			cfg.Producer.Compression = tc.codec
			cfg.Producer.Partitioner = sarama.NewManualPartitioner
			cfg.Producer.Flush.Messages = 10
			cfg.Consumer.Return.Errors = true
			cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
			prod, err := sarama.NewSyncProducer([]string{srv.KafkaAddr}, cfg)
			require.NoError(t, err)
			defer prod.Close()
			var msgs []*sarama.ProducerMessage
			for i := range 25 {
				msgs = append(msgs, &sarama.ProducerMessage{Topic: topic, Key: sarama.StringEncoder(fmt.Sprintf("k%d", i)), Value: sarama.StringEncoder(fmt.Sprintf("%s-%d", tc.name, i)),
					Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte("v")}}})
			}
			require.NoError(t, prod.SendMessages(msgs))

			cons, err := sarama.NewConsumer([]string{srv.KafkaAddr}, cfg)
			require.NoError(t, err)
			defer cons.Close()
			pc, err := cons.ConsumePartition(topic, 0, sarama.OffsetOldest)
			require.NoError(t, err)
			defer pc.Close()
			timeout := time.After(30 * time.Second)
			for i := range msgs {
				select {
				case m := <-pc.Messages():
					require.Equal(t, int64(i), m.Offset)
					require.Equal(t, fmt.Sprintf("%s-%d", tc.name, i), string(m.Value))
					require.Equal(t, fmt.Sprintf("k%d", i), string(m.Key))
					require.Len(t, m.Headers, 1)
				case err := <-pc.Errors():
					t.Fatalf("consuming: %v", err)
				case <-timeout:
					t.Fatalf("%d of %d messages consumed", i, len(msgs))
				}
			}
			require.Equal(t, int64(len(msgs)), pc.HighWaterMarkOffset())
		})
	}
}

// TestSegmentioKafkaGoProducesAndConsumes runs segmentio/kafka-go's writer
// (acks all, each codec) and a reader of one partition.
func TestSegmentioKafkaGoProducesAndConsumes(t *testing.T) {
	srv := startServer(t)
	for _, tc := range []struct {
		name  string
		codec compress.Compression
	}{{"none", 0}, {"gzip", compress.Gzip}, {"snappy", compress.Snappy}, {"lz4", compress.Lz4}, {"zstd", compress.Zstd}} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "segmentio-" + tc.name
			w := &segkafka.Writer{
				Addr: segkafka.TCP(srv.KafkaAddr), Topic: topic, RequiredAcks: segkafka.RequireAll, Compression: tc.codec,
				Balancer: &segkafka.Hash{}, AllowAutoTopicCreation: true, BatchTimeout: 10 * time.Millisecond,
			}
			defer w.Close()
			var msgs []segkafka.Message
			for i := range 20 {
				msgs = append(msgs, segkafka.Message{Key: []byte("same-key"), Value: fmt.Appendf(nil, "%s-%d", tc.name, i)})
			}
			ctx := ctxT(t)
			// The topic is created by the first write's metadata request;
			// kafka-go reports the leader as unknown until then.
			require.Eventually(t, func() bool { return w.WriteMessages(ctx, msgs...) == nil }, 20*time.Second, 100*time.Millisecond)

			md := consumeN(t, srv.KafkaAddr, topic, []int32{0, 1, 2}, len(msgs))
			partition := md[0].Partition
			r := segkafka.NewReader(segkafka.ReaderConfig{Brokers: []string{srv.KafkaAddr}, Topic: topic, Partition: int(partition), MaxWait: 100 * time.Millisecond})
			defer r.Close()
			for i := range msgs {
				m, err := r.ReadMessage(ctx)
				require.NoError(t, err)
				require.Equal(t, fmt.Sprintf("%s-%d", tc.name, i), string(m.Value))
				require.Equal(t, "same-key", string(m.Key))
			}
		})
	}
}
