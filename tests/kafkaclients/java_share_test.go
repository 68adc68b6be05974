package kafkaclients_test

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestJavaShareConsumer: Java kafka-clients' KafkaShareConsumer (KIP-932)
// over the DMS consumer group behind a share group: it reads every record
// of a topic once, and a record it releases comes back to it with its
// delivery count raised.
func TestJavaShareConsumer(t *testing.T) {
	libs := filepath.Join(tool(t, "DMS_KAFKA_JAVA_LIBS"), "*")
	classes := t.TempDir()
	run(t, "javac", "-d", classes, "-cp", libs, "java/ShareConsumer.java")
	cp := classes + string(filepath.ListSeparator) + libs
	srv := startServer(t)
	addr := srv.KafkaAddr

	produce := func(topic string, n int) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
		require.NoError(t, err)
		defer cl.Close()
		var recs []*kgo.Record
		for i := range n {
			recs = append(recs, kgo.StringRecord(fmt.Sprintf("s-%03d", i)))
		}
		require.NoError(t, cl.ProduceSync(ctxT(t), recs...).FirstErr())
	}

	t.Run("consume", func(t *testing.T) {
		produce("java-share", 100)
		var got struct{ Values []string }
		javaShare(t, cp, &got, "consume", addr, "java-share", "100", "java-sharers")
		require.Equal(t, expectedValues("s", 100), valueSet(t, got.Values))
	})
	t.Run("release", func(t *testing.T) {
		produce("java-share-release", 3)
		var got struct {
			Released      string
			DeliveryCount int `json:"delivery_count"`
		}
		javaShare(t, cp, &got, "release", addr, "java-share-release", "java-releasers")
		require.NotEqual(t, "null", got.Released)
		require.Equal(t, 2, got.DeliveryCount, "the released record came back, delivered a second time")
	})
}

// javaShare runs a scenario of ShareConsumer and decodes its answer.
func javaShare(t *testing.T, classpath string, out any, args ...string) {
	t.Helper()
	stdout := run(t, "java", append([]string{"-XX:TieredStopAtLevel=1", "-cp", classpath, "ShareConsumer"}, args...)...)
	require.NoError(t, json.Unmarshal([]byte(stdout), out), "%s", stdout)
}
