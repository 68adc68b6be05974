package kafka_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestDataAPIsAtEveryVersion extends the version sweep to requests with
// content: every advertised version of the data and topic APIs is sent
// naming a real topic and partition, its answer decoded at that version,
// and the error code it carries checked (none, except where a version is
// advertised but refused by design).
func TestDataAPIsAtEveryVersion(t *testing.T) {
	srv := startServer(t)
	c := dialRaw(t, srv.KafkaAddr)
	topic := "sweep"
	md := c.roundTrip(&kmsg.MetadataRequest{Version: 12, AllowAutoTopicCreation: true, Topics: []kmsg.MetadataRequestTopic{{Topic: &topic}}}).(*kmsg.MetadataResponse)
	require.Zero(t, md.Topics[0].ErrorCode)
	id := md.Topics[0].TopicID
	epoch := md.Topics[0].Partitions[0].LeaderEpoch

	versions := map[int16][2]int16{}
	for _, k := range c.roundTrip(&kmsg.ApiVersionsRequest{Version: 3}).(*kmsg.ApiVersionsResponse).ApiKeys {
		versions[k.ApiKey] = [2]int16{k.MinVersion, k.MaxVersion}
	}
	sweep := func(key int16, build func(v int16) kmsg.Request, code func(kmsg.Response) int16, want func(v int16) int16) {
		r, ok := versions[key]
		require.True(t, ok, "%s is advertised", kmsg.NameForKey(key))
		for v := r[0]; v <= r[1]; v++ {
			req := build(v)
			req.SetVersion(v)
			resp := c.roundTrip(req)
			require.Equal(t, v, resp.GetVersion())
			require.Equal(t, want(v), code(resp), "%s v%d", kmsg.NameForKey(key), v)
		}
	}
	none := func(int16) int16 { return 0 }

	sweep(kmsg.Produce.Int16(), func(v int16) kmsg.Request {
		return produceRequest(topic, 0, rawBatch(t, -1, 0, 0, fmt.Sprintf("v%d", v)))
	}, func(r kmsg.Response) int16 { return r.(*kmsg.ProduceResponse).Topics[0].Partitions[0].ErrorCode },
		func(v int16) int16 {
			if v < 3 {
				return kerr.UnsupportedForMessageFormat.Code
			}
			return 0
		})
	sweep(kmsg.Fetch.Int16(), func(v int16) kmsg.Request {
		req := fetchRequest(topic, 0, 0)
		req.Topics[0].TopicID = id
		req.Topics[0].Partitions[0].CurrentLeaderEpoch = epoch
		return req
	}, func(r kmsg.Response) int16 {
		p := r.(*kmsg.FetchResponse).Topics[0].Partitions[0]
		if p.ErrorCode == 0 && len(p.RecordBatches) == 0 {
			return -100 // records expected
		}
		return p.ErrorCode
	}, none)
	sweep(kmsg.ListOffsets.Int16(), func(int16) kmsg.Request {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp, rp.CurrentLeaderEpoch, rp.MaxNumOffsets = -1, epoch, 1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}, func(r kmsg.Response) int16 { return r.(*kmsg.ListOffsetsResponse).Topics[0].Partitions[0].ErrorCode }, none)
	sweep(kmsg.OffsetForLeaderEpoch.Int16(), func(int16) kmsg.Request {
		req := kmsg.NewPtrOffsetForLeaderEpochRequest()
		req.ReplicaID = -1
		rt := kmsg.NewOffsetForLeaderEpochRequestTopic()
		rt.Topic = topic
		rp := kmsg.NewOffsetForLeaderEpochRequestTopicPartition()
		rp.CurrentLeaderEpoch, rp.LeaderEpoch = epoch, epoch
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		return req
	}, func(r kmsg.Response) int16 {
		return r.(*kmsg.OffsetForLeaderEpochResponse).Topics[0].Partitions[0].ErrorCode
	}, none)
	sweep(kmsg.InitProducerID.Int16(), func(int16) kmsg.Request {
		return &kmsg.InitProducerIDRequest{ProducerID: -1, ProducerEpoch: -1}
	}, func(r kmsg.Response) int16 { return r.(*kmsg.InitProducerIDResponse).ErrorCode }, none)
	sweep(kmsg.DescribeConfigs.Int16(), func(int16) kmsg.Request {
		req := kmsg.NewPtrDescribeConfigsRequest()
		req.IncludeDocumentation = true
		req.Resources = []kmsg.DescribeConfigsRequestResource{{ResourceType: kmsg.ConfigResourceTypeTopic, ResourceName: topic}}
		return req
	}, func(r kmsg.Response) int16 {
		res := r.(*kmsg.DescribeConfigsResponse).Resources[0]
		if len(res.Configs) == 0 {
			return -100
		}
		return res.ErrorCode
	}, none)
	sweep(kmsg.CreateTopics.Int16(), func(v int16) kmsg.Request {
		req := kmsg.NewPtrCreateTopicsRequest()
		req.TimeoutMillis = 10000
		req.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: fmt.Sprintf("made-%d", v), NumPartitions: 1, ReplicationFactor: -1}}
		return req
	}, func(r kmsg.Response) int16 { return r.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode }, none)
	sweep(kmsg.CreatePartitions.Int16(), func(v int16) kmsg.Request {
		req := kmsg.NewPtrCreatePartitionsRequest()
		req.TimeoutMillis = 10000
		req.Topics = []kmsg.CreatePartitionsRequestTopic{{Topic: fmt.Sprintf("made-%d", v), Count: 2}}
		return req
	}, func(r kmsg.Response) int16 { return r.(*kmsg.CreatePartitionsResponse).Topics[0].ErrorCode }, none)
	sweep(kmsg.DeleteRecords.Int16(), func(int16) kmsg.Request {
		req := kmsg.NewPtrDeleteRecordsRequest()
		req.Topics = []kmsg.DeleteRecordsRequestTopic{{Topic: topic, Partitions: []kmsg.DeleteRecordsRequestTopicPartition{{Offset: 1}}}}
		return req
	}, func(r kmsg.Response) int16 { return r.(*kmsg.DeleteRecordsResponse).Topics[0].Partitions[0].ErrorCode },
		func(int16) int16 { return kerr.PolicyViolation.Code })
	sweep(kmsg.DeleteTopics.Int16(), func(v int16) kmsg.Request {
		name := fmt.Sprintf("made-%d", v)
		req := kmsg.NewPtrDeleteTopicsRequest()
		req.TopicNames = []string{name}
		req.Topics = []kmsg.DeleteTopicsRequestTopic{{Topic: &name}}
		return req
	}, func(r kmsg.Response) int16 { return r.(*kmsg.DeleteTopicsResponse).Topics[0].ErrorCode }, none)
}
