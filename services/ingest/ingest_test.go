package ingest_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	ingestv1 "github.com/opendms/dms/gen/go/dms/cluster/ingest/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

func TestSendValidationStoresNothingOnError(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "q", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO})
	ok := &dmsv1.Message{Body: []byte("ok")}
	big := &dmsv1.Message{Body: make([]byte, 512*1024+1)}
	tests := []struct {
		name   string
		msgs   []*dmsv1.Message
		reason string
	}{
		{"empty batch", nil, "BATCH_EMPTY"},
		{"too many messages", make([]*dmsv1.Message, 1001), "BATCH_TOO_LARGE"},
		{"oversized message after a good one", []*dmsv1.Message{ok, big}, "MESSAGE_TOO_LARGE"},
		{"attributes count toward the size", []*dmsv1.Message{{Body: make([]byte, 512*1024-10), Attributes: map[string]*dmsv1.AttributeValue{"k": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "0123456789"}}}}}, "MESSAGE_TOO_LARGE"},
		{"four tags", []*dmsv1.Message{{Tags: []string{"a", "b", "c", "d"}}}, "TAG_INVALID"},
		{"bad tag", []*dmsv1.Message{{Tags: []string{"a b"}}}, "TAG_INVALID"},
		{"long tag", []*dmsv1.Message{{Tags: []string{strings.Repeat("t", 65)}}}, "TAG_INVALID"},
		{"attribute without value", []*dmsv1.Message{{Attributes: map[string]*dmsv1.AttributeValue{"k": {}}}}, "ATTRIBUTE_INVALID"},
		{"empty attribute name", []*dmsv1.Message{{Attributes: map[string]*dmsv1.AttributeValue{"": {Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: true}}}}}, "ATTRIBUTE_INVALID"},
		{"batch over 8 MiB", func() []*dmsv1.Message {
			m := make([]*dmsv1.Message, 17)
			for i := range m {
				m[i] = &dmsv1.Message{Body: make([]byte, 500*1024)}
			}
			return m
		}(), "BATCH_TOO_LARGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, m := range tt.msgs {
				if m == nil {
					tt.msgs[i] = ok
				}
			}
			_, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: tt.msgs})
			require.Equal(t, tt.reason, rpcstatus.Reason(err), "%v", err)
		})
	}
	got, err := s.Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	require.Zero(t, got.GetQueue().GetMessageCount(), "no rejected batch stored anything")
}

func TestSendRoundTripsEveryField(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "q", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO})
	g := s.CreateGroup(t, q, "g")
	msg := &dmsv1.Message{
		Body: []byte{0, 1, 2, 255},
		Tags: []string{"t1", "t2"},
		Attributes: map[string]*dmsv1.AttributeValue{
			"s": {Kind: &dmsv1.AttributeValue_StringValue{StringValue: "v"}},
			"i": {Kind: &dmsv1.AttributeValue_IntValue{IntValue: -7}},
			"d": {Kind: &dmsv1.AttributeValue_DoubleValue{DoubleValue: 1.5}},
			"b": {Kind: &dmsv1.AttributeValue_BoolValue{BoolValue: true}},
		},
	}
	sent, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{msg}})
	require.NoError(t, err)
	got := s.Receive(t, g, 1, 30*time.Second)
	require.Len(t, got, 1)
	require.Equal(t, sent.GetResults()[0].GetMessageId(), got[0].GetMessageId())
	require.Equal(t, msg.GetBody(), got[0].GetMessage().GetBody())
	require.Equal(t, msg.GetTags(), got[0].GetMessage().GetTags())
	require.Len(t, got[0].GetMessage().GetAttributes(), 4)
	require.EqualValues(t, -7, got[0].GetMessage().GetAttributes()["i"].GetIntValue())
}

func TestInternalPublishByQueueID(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "q"})
	resp, err := ingestv1.NewIngestServiceClient(s.Internal).Publish(context.Background(), &ingestv1.PublishRequest{QueueId: q.GetId(), Messages: []*dmsv1.Message{{Body: []byte("x")}, {Body: []byte("y")}}})
	require.NoError(t, err)
	require.Len(t, resp.GetResults(), 2)
	require.Equal(t, resp.GetResults()[0].GetOffset()+1, resp.GetResults()[1].GetOffset(), "a batch lands in one partition, consecutively")
	_, err = ingestv1.NewIngestServiceClient(s.Internal).Publish(context.Background(), &ingestv1.PublishRequest{QueueId: "00000000-0000-0000-0000-000000000000", Messages: []*dmsv1.Message{{Body: []byte("x")}}})
	require.Equal(t, "QUEUE_NOT_FOUND", rpcstatus.Reason(err))
}

func TestRetriesWithAnIdempotenceKeyStoreOnce(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "idem", PartitionCount: 3})
	batch := []*dmsv1.Message{{Body: []byte("a")}, {Body: []byte("b")}, {Body: []byte("k"), OrderingKey: "key"}}
	send := func(key string) *dmsv1.SendMessagesResponse {
		resp, err := s.Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: batch, IdempotenceKey: key})
		require.NoError(t, err)
		return resp
	}
	count := func() int64 {
		got, err := s.Queues().GetQueue(context.Background(), &dmsv1.GetQueueRequest{Name: q.GetName()})
		require.NoError(t, err)
		return got.GetQueue().GetMessageCount()
	}
	first := send("producer-1/seq-1")
	require.True(t, proto.Equal(first, send("producer-1/seq-1")), "a retry returns the first attempt's ids and offsets")
	require.EqualValues(t, 3, count())

	// Concurrent retries of a new batch store it once too.
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() { defer wg.Done(); send("producer-1/seq-2") }()
	}
	wg.Wait()
	require.EqualValues(t, 6, count())

	s.Restart(t)
	require.True(t, proto.Equal(first, send("producer-1/seq-1")), "the key survives a restart: it is rebuilt from the log")
	require.EqualValues(t, 6, count())
	send("producer-1/seq-3")
	require.EqualValues(t, 9, count(), "a new key stores a new batch")
}
