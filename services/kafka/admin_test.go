package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/server"
)

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// queueMode returns the mode of the default project's queue with a name.
func queueMode(t testing.TB, addr string, srvQueues dmsv1.QueueServiceClient, name string) dmsv1.QueueMode {
	t.Helper()
	resp, err := srvQueues.ListQueues(ctxT(t), &dmsv1.ListQueuesRequest{Parent: catalog.ProjectResource(server.DefaultProject)})
	require.NoError(t, err)
	for _, q := range resp.GetQueues() {
		if q.GetDisplayName() == name {
			return q.GetMode()
		}
	}
	t.Fatalf("no queue %q", name)
	return 0
}

// TestTopicsThroughKadm creates, describes, grows and deletes topics with
// franz-go's admin client and checks the queues behind them.
func TestTopicsThroughKadm(t *testing.T) {
	srv := startServer(t)
	adm := kadm.NewClient(newClient(t, srv.KafkaAddr))
	ctx := ctxT(t)

	ha := "dms.queue.mode"
	ht, ret := "KAFKA_HT", "7200000"
	created, err := adm.CreateTopics(ctx, 2, 1, map[string]*string{ha: &ht, "retention.ms": &ret}, "fast")
	require.NoError(t, err)
	require.NoError(t, created["fast"].Err)
	require.Equal(t, int32(2), created["fast"].NumPartitions)
	created, err = adm.CreateTopics(ctx, -1, -1, nil, "safe")
	require.NoError(t, err)
	require.NoError(t, created["safe"].Err)
	require.Equal(t, dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT, queueMode(t, srv.KafkaAddr, srv.Queues(), "fast"))
	require.Equal(t, dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, queueMode(t, srv.KafkaAddr, srv.Queues(), "safe"), "the default mode")

	// Creating again, a config DMS lacks, a fixed config with another
	// value: refused, nothing created.
	created, err = adm.CreateTopics(ctx, 1, 1, nil, "fast")
	require.NoError(t, err)
	require.ErrorIs(t, created["fast"].Err, kerr.TopicAlreadyExists)
	compact, seg := "compact", "1024"
	created, err = adm.CreateTopics(ctx, 1, 1, map[string]*string{"cleanup.policy": &compact}, "compacted")
	require.NoError(t, err)
	require.ErrorIs(t, created["compacted"].Err, kerr.InvalidConfig)
	created, err = adm.CreateTopics(ctx, 1, 1, map[string]*string{"segment.bytes": &seg}, "segmented")
	require.NoError(t, err)
	require.ErrorIs(t, created["segmented"].Err, kerr.InvalidConfig)
	// validateOnly creates nothing.
	validated, err := adm.ValidateCreateTopics(ctx, 1, 1, nil, "dry")
	require.NoError(t, err)
	require.NoError(t, validated["dry"].Err)
	topics, err := adm.ListTopics(ctx)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"fast", "safe"}, topics.Names())

	// Configs are what the queue has.
	described, err := adm.DescribeTopicConfigs(ctx, "fast")
	require.NoError(t, err)
	rc, err := described.On("fast", nil)
	require.NoError(t, err)
	require.NoError(t, rc.Err)
	values := map[string]string{}
	for _, c := range rc.Configs {
		values[c.Key] = c.MaybeValue()
	}
	require.Equal(t, "KAFKA_HT", values["dms.queue.mode"])
	require.Equal(t, "7200000", values["retention.ms"])
	require.Equal(t, "delete", values["cleanup.policy"])
	require.Equal(t, "1048588", values["max.message.bytes"])
	require.NotEmpty(t, values["min.insync.replicas"])
	brokers, err := adm.DescribeBrokerConfigs(ctx)
	require.NoError(t, err)
	require.NotEmpty(t, brokers)

	// Growing: more partitions, then a count that does not grow.
	grown, err := adm.UpdatePartitions(ctx, 4, "fast")
	require.NoError(t, err)
	require.NoError(t, grown["fast"].Err)
	require.Eventually(t, func() bool {
		md, err := adm.Metadata(ctx, "fast")
		return err == nil && len(md.Topics["fast"].Partitions) == 4
	}, 10*time.Second, 50*time.Millisecond)
	grown, err = adm.UpdatePartitions(ctx, 3, "fast")
	require.NoError(t, err)
	require.ErrorIs(t, grown["fast"].Err, kerr.InvalidPartitions)

	// DeleteRecords is refused, nothing is deleted.
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic("safe"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	produceAll(t, cl, records("safe", 3, "r")...)
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: "safe", Partition: 0, At: 2})
	deleted, err := adm.DeleteRecords(ctx, offsets)
	require.NoError(t, err)
	require.ErrorIs(t, deleted["safe"][0].Err, kerr.PolicyViolation)
	starts, err := adm.ListStartOffsets(ctx, "safe")
	require.NoError(t, err)
	start, _ := starts.Lookup("safe", 0)
	require.Zero(t, start.Offset)

	// Deleting: the queue goes.
	removed, err := adm.DeleteTopics(ctx, "fast")
	require.NoError(t, err)
	require.NoError(t, removed["fast"].Err)
	require.Eventually(t, func() bool {
		resp, err := srv.Queues().ListQueues(ctx, &dmsv1.ListQueuesRequest{Parent: catalog.ProjectResource(server.DefaultProject)})
		return err == nil && len(resp.GetQueues()) == 1
	}, 10*time.Second, 50*time.Millisecond)
	removed, err = adm.DeleteTopics(ctx, "fast")
	require.NoError(t, err)
	require.ErrorIs(t, removed["fast"].Err, kerr.UnknownTopicOrPartition)
}

// TestAutoCreateOnProduce checks that a Produce to an unknown topic creates
// it, and that with -kafka.auto-create-topics=false it is refused and
// nothing is created.
func TestAutoCreateOnProduce(t *testing.T) {
	for _, on := range []bool{true, false} {
		srv := startServer(t, "-kafka.auto-create-topics="+map[bool]string{true: "true", false: "false"}[on])
		c := dialRaw(t, srv.KafkaAddr)
		resp := c.roundTrip(produceRequest("fresh", 0, rawBatch(t, -1, 0, 0, "a", "b"))).(*kmsg.ProduceResponse)
		p := resp.Topics[0].Partitions[0]
		if on {
			require.Zero(t, p.ErrorCode)
			require.Zero(t, p.BaseOffset)
		} else {
			require.Equal(t, kerr.UnknownTopicOrPartition.Code, p.ErrorCode)
			list, err := srv.Queues().ListQueues(ctxT(t), &dmsv1.ListQueuesRequest{Parent: catalog.ProjectResource(server.DefaultProject)})
			require.NoError(t, err)
			require.Empty(t, list.GetQueues())
		}
	}
}

// TestListOffsetsByTimeAndLeaderEpochs produces two batches at known times
// and looks offsets up by time, earliest and latest, and checks the leader
// epoch answers.
func TestListOffsetsByTimeAndLeaderEpochs(t *testing.T) {
	srv := startServer(t)
	topic := "times"
	cl := newClient(t, srv.KafkaAddr, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var recs []*kgo.Record
	for i := range 6 {
		r := records(topic, 1, "t")[0]
		r.Value = []byte{byte('a' + i)}
		r.Timestamp = base.Add(time.Duration(i) * time.Minute)
		recs = append(recs, r)
	}
	produceAll(t, cl, recs[:3]...)
	produceAll(t, cl, recs[3:]...)

	adm := kadm.NewClient(cl)
	ctx := ctxT(t)
	at, err := adm.ListOffsetsAfterMilli(ctx, base.Add(4*time.Minute-time.Second).UnixMilli(), topic)
	require.NoError(t, err)
	o, _ := at.Lookup(topic, 0)
	require.NoError(t, o.Err)
	require.Equal(t, int64(4), o.Offset)
	require.Equal(t, base.Add(4*time.Minute).UnixMilli(), o.Timestamp)
	at, err = adm.ListOffsetsAfterMilli(ctx, base.Add(90*time.Second).UnixMilli(), topic)
	require.NoError(t, err)
	o, _ = at.Lookup(topic, 0)
	require.Equal(t, int64(2), o.Offset, "a record inside the first batch")
	// No record that late: -1 (kadm would turn it into the end offset).
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.Version = 6
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	lp := kmsg.NewListOffsetsRequestTopicPartition()
	lp.Timestamp = time.Now().Add(time.Hour).UnixMilli()
	lt.Partitions = append(lt.Partitions, lp)
	lo.Topics = append(lo.Topics, lt)
	late := dialRaw(t, srv.KafkaAddr).roundTrip(lo).(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0]
	require.Zero(t, late.ErrorCode)
	require.Equal(t, int64(-1), late.Offset)
	require.Equal(t, int64(-1), late.Timestamp)
	ends, err := adm.ListEndOffsets(ctx, topic)
	require.NoError(t, err)
	o, _ = ends.Lookup(topic, 0)
	require.Equal(t, int64(6), o.Offset)

	// A consumer seeking by time reads from there.
	got := consumeFrom(t, srv.KafkaAddr, topic, 0, kgo.NewOffset().AfterMilli(base.Add(3*time.Minute).UnixMilli()), 3)
	require.Equal(t, "def", string([]byte{got[0].Value[0], got[1].Value[0], got[2].Value[0]}))

	// Leader epochs: the current one passes, an older one is fenced, a
	// newer one unknown; OffsetForLeaderEpoch ends the current epoch at
	// the log's end.
	md, err := adm.Metadata(ctx, topic)
	require.NoError(t, err)
	epoch := md.Topics[topic].Partitions[0].LeaderEpoch
	c := dialRaw(t, srv.KafkaAddr)
	for _, tc := range []struct {
		epoch int32
		code  int16
	}{{epoch, 0}, {epoch - 1, kerr.FencedLeaderEpoch.Code}, {epoch + 1, kerr.UnknownLeaderEpoch.Code}} {
		req := fetchRequest(topic, 0, 0)
		req.Topics[0].Partitions[0].CurrentLeaderEpoch = tc.epoch
		require.Equal(t, tc.code, c.roundTrip(req).(*kmsg.FetchResponse).Topics[0].Partitions[0].ErrorCode, "epoch %d", tc.epoch)
	}
	oe := kmsg.NewPtrOffsetForLeaderEpochRequest()
	oe.Version = 4
	ot := kmsg.NewOffsetForLeaderEpochRequestTopic()
	ot.Topic = topic
	op := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
	op.Partition, op.CurrentLeaderEpoch, op.LeaderEpoch = 0, epoch, epoch
	ot.Partitions = append(ot.Partitions, op)
	oe.Topics = append(oe.Topics, ot)
	er := c.roundTrip(oe).(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0]
	require.Zero(t, er.ErrorCode)
	require.Equal(t, epoch, er.LeaderEpoch)
	require.Equal(t, int64(6), er.EndOffset)
}

// consumeFrom reads n records of one partition from an offset.
func consumeFrom(t testing.TB, addr, topic string, partition int32, at kgo.Offset, n int) []*kgo.Record {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: at}}))
	ctx := ctxT(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		require.NoError(t, ctx.Err())
		for _, e := range fs.Errors() {
			require.NoError(t, e.Err)
		}
		out = append(out, fs.Records()...)
	}
	return out
}
