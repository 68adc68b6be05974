package kafka_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// sweepRequests fills in what a request needs to be answered at once
// rather than waited on or ignored; every other field keeps kmsg's default.
var sweepRequests = map[int16]func(kmsg.Request){
	kmsg.Produce.Int16(): func(r kmsg.Request) { r.(*kmsg.ProduceRequest).Acks = -1 },
	kmsg.Fetch.Int16():   func(r kmsg.Request) { r.(*kmsg.FetchRequest).MaxWaitMillis = 0 },

	// Group requests name a group, so that they reach its coordinator;
	// each JoinGroup a group of its own, which a lone member completes at
	// once (the sweep's server has no initial rebalance delay).
	kmsg.FindCoordinator.Int16(): func(r kmsg.Request) {
		fc := r.(*kmsg.FindCoordinatorRequest)
		fc.CoordinatorKey, fc.CoordinatorKeys = "sweep", []string{"sweep", "other"}
	},
	kmsg.JoinGroup.Int16(): func(r kmsg.Request) {
		j := r.(*kmsg.JoinGroupRequest)
		sweepJoins++
		j.Group = fmt.Sprintf("sweep-%d", sweepJoins)
		j.SessionTimeoutMillis, j.RebalanceTimeoutMillis, j.ProtocolType = 10000, 10000, "consumer"
		j.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: (&kmsg.ConsumerMemberMetadata{Topics: []string{"t"}}).AppendTo(nil)}}
	},
	kmsg.SyncGroup.Int16():  func(r kmsg.Request) { r.(*kmsg.SyncGroupRequest).Group = "sweep-1" },
	kmsg.Heartbeat.Int16():  func(r kmsg.Request) { r.(*kmsg.HeartbeatRequest).Group = "sweep-1" },
	kmsg.LeaveGroup.Int16(): func(r kmsg.Request) { r.(*kmsg.LeaveGroupRequest).Group = "sweep-1" },
	kmsg.OffsetCommit.Int16(): func(r kmsg.Request) {
		c := r.(*kmsg.OffsetCommitRequest)
		c.Group, c.Generation = "sweep-commit", -1
		c.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 1}}}}
	},
	kmsg.OffsetFetch.Int16(): func(r kmsg.Request) {
		f := r.(*kmsg.OffsetFetchRequest)
		f.Group, f.Groups = "sweep-commit", []kmsg.OffsetFetchRequestGroup{{Group: "sweep-commit"}, {Group: "sweep-1"}}
		f.Topics = []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0}}}
	},
	kmsg.DescribeGroups.Int16(): func(r kmsg.Request) { r.(*kmsg.DescribeGroupsRequest).Groups = []string{"sweep-1", "nope"} },
	kmsg.DeleteGroups.Int16():   func(r kmsg.Request) { r.(*kmsg.DeleteGroupsRequest).Groups = []string{"nope"} },
	kmsg.OffsetDelete.Int16(): func(r kmsg.Request) {
		d := r.(*kmsg.OffsetDeleteRequest)
		d.Group = "sweep-commit"
		d.Topics = []kmsg.OffsetDeleteRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetDeleteRequestTopicPartition{{Partition: 0}}}}
	},
}

// sweepJoins numbers the sweep's JoinGroup requests.
var sweepJoins int

// TestEveryAdvertisedVersionRoundTrips sends every API the server
// advertises, at every version it advertises, encoded by kmsg, and decodes
// the answer at that version.
func TestEveryAdvertisedVersionRoundTrips(t *testing.T) {
	srv := startServer(t, "-kafka.group-initial-rebalance-delay=0")
	c := dialRaw(t, srv.KafkaAddr)
	versions := c.roundTrip(&kmsg.ApiVersionsRequest{Version: 0}).(*kmsg.ApiVersionsResponse)
	require.Zero(t, versions.ErrorCode)
	require.NotEmpty(t, versions.ApiKeys)
	swept := 0
	for _, k := range versions.ApiKeys {
		for v := k.MinVersion; v <= k.MaxVersion; v++ {
			req := kmsg.RequestForKey(k.ApiKey)
			require.NotNil(t, req, "advertised key %d", k.ApiKey)
			req.SetVersion(v)
			if prepare := sweepRequests[k.ApiKey]; prepare != nil {
				prepare(req)
			}
			resp := c.roundTrip(req)
			require.Equal(t, v, resp.GetVersion(), "%s v%d", kmsg.NameForKey(k.ApiKey), v)
			swept++
		}
	}
	t.Logf("%d API versions swept", swept)
}

// TestApiVersionsAboveTheMaximumAnswersV0 checks the fallback every client
// relies on: an ApiVersions request newer than the server's is answered at
// v0 with UNSUPPORTED_VERSION and the full list.
func TestApiVersionsAboveTheMaximumAnswersV0(t *testing.T) {
	srv := startServer(t)
	c := dialRaw(t, srv.KafkaAddr)
	// A version the server has never heard of: a v4 body under a header
	// that says 99 (the body of an unknown version is not read).
	c.corr++
	frame := kmsg.NewRequestFormatter().AppendRequest(nil, &kmsg.ApiVersionsRequest{Version: 4}, c.corr)
	frame[6], frame[7] = 0, 99
	_, err := c.conn.Write(frame)
	require.NoError(t, err)
	resp, err := c.receive(&kmsg.ApiVersionsRequest{Version: 0}, c.corr)
	require.NoError(t, err)
	av := resp.(*kmsg.ApiVersionsResponse)
	require.Equal(t, kerr.UnsupportedVersion.Code, av.ErrorCode)
	require.NotEmpty(t, av.ApiKeys)
}

// TestMetadataListsThisBrokerAndItsTopics checks the broker list and that a
// topic named in a request is created and described.
func TestMetadataListsThisBrokerAndItsTopics(t *testing.T) {
	srv := startServer(t)
	c := dialRaw(t, srv.KafkaAddr)
	topic := "orders"
	req := &kmsg.MetadataRequest{Version: 12, AllowAutoTopicCreation: true, Topics: []kmsg.MetadataRequestTopic{{Topic: &topic}}}
	resp := c.roundTrip(req).(*kmsg.MetadataResponse)
	require.Len(t, resp.Brokers, 1)
	require.Equal(t, srv.KafkaAddr, hostPort(resp.Brokers[0].Host, resp.Brokers[0].Port))
	require.NotNil(t, resp.ClusterID)
	require.Len(t, resp.Topics, 1)
	require.Zero(t, resp.Topics[0].ErrorCode)
	require.Equal(t, topic, *resp.Topics[0].Topic)
	require.NotZero(t, resp.Topics[0].TopicID)
	require.NotEmpty(t, resp.Topics[0].Partitions)

	// Without auto-creation, an unknown topic is UNKNOWN_TOPIC_OR_PARTITION
	// and a name no queue can have is INVALID_TOPIC_EXCEPTION.
	unknown, invalid := "nope", "bad.name!"
	resp = c.roundTrip(&kmsg.MetadataRequest{Version: 12, Topics: []kmsg.MetadataRequestTopic{{Topic: &unknown}, {Topic: &invalid}}}).(*kmsg.MetadataResponse)
	require.Equal(t, kerr.UnknownTopicOrPartition.Code, resp.Topics[0].ErrorCode)
	require.Equal(t, kerr.InvalidTopicException.Code, resp.Topics[1].ErrorCode)

	// All topics: the one created.
	resp = c.roundTrip(&kmsg.MetadataRequest{Version: 1}).(*kmsg.MetadataResponse)
	require.Len(t, resp.Topics, 1)
	require.Equal(t, topic, *resp.Topics[0].Topic)
}
