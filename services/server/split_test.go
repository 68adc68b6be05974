package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/storage/logid"
	"github.com/opendms/dms/services/testserver"
)

// TestRolesSplitOverProcesses runs the roles in three servers that share
// nothing but etcd (the first one's, embedded) and reach each other over
// their internal listeners, the way separate processes do: storage and
// metadata in one, the producer, consumer and scheduler roles in another,
// the REST gateway in a third. Every path a client takes crosses them.
func TestRolesSplitOverProcesses(t *testing.T) {
	data := testserver.Start(t, testserver.WithFlags("-target", "storage,metadata"))
	etcd := []string{"-etcd.endpoints", data.EtcdEndpoint}
	front := testserver.Start(t, testserver.WithFlags(append([]string{"-target", "ingest,delivery,scheduler"}, etcd...)...))
	rest := testserver.Start(t, testserver.WithFlags(append([]string{"-target", "gateway"}, etcd...)...))
	ctx := context.Background()

	// The admin API is served by the metadata role's process, and counts
	// come from the others.
	q := data.CreateQueue(t, "0123456789abcdef0123456789abcdef", &dmsv1.Queue{DisplayName: "split"})
	g := data.CreateGroup(t, q, "billing")

	// Producer and consumer APIs of the second process store in and read
	// from the first.
	front.Send(t, q, "one", "two")
	delayed, err := front.Producer().SendMessages(ctx, &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{
		{Body: []byte("later"), Delay: durationpb.New(time.Second)},
	}})
	require.NoError(t, err)
	require.NotEmpty(t, delayed.GetResults()[0].GetScheduleId())
	var bodies []string
	require.Eventually(t, func() bool {
		resp, err := front.Consumer().ReceiveMessages(ctx, &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 10, WaitTime: durationpb.New(time.Second)})
		require.NoError(t, err)
		if len(resp.GetMessages()) > 0 {
			bodies = append(bodies, testserver.Bodies(resp.GetMessages())...)
			results := front.Ack(t, g, dmsv1.AckStatus_ACK_STATUS_SUCCESS, resp.GetMessages()...)
			for _, r := range results {
				require.True(t, r.GetApplied(), r.GetErrorMessage())
			}
		}
		return len(bodies) == 3
	}, 20*time.Second, 10*time.Millisecond)
	require.ElementsMatch(t, []string{"one", "two", "later"}, bodies)

	got, err := data.Queues().GetConsumerGroup(ctx, &dmsv1.GetConsumerGroupRequest{Name: g.GetName()})
	require.NoError(t, err)
	require.EqualValues(t, 3, got.GetGroup().GetStats().GetConsumedMessages())

	// The REST gateway of the third process reaches the roles of both.
	body, _ := json.Marshal(map[string]any{"messages": []map[string]any{{"body": map[string]int{"n": 1}}}})
	resp, err := http.Post("http://"+rest.HTTPAddr+"/v1.0/0123456789abcdef0123456789abcdef/queues/"+q.GetId()+"/messages", "application/json", bytes.NewReader(body))
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(out))
	resp, err = http.Get("http://" + rest.HTTPAddr + "/v1/" + q.GetName())
	require.NoError(t, err)
	out, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, string(out))
	require.Contains(t, string(out), `"messageCount":"4"`)
}

// TestClusterAPIsAreNotServedToClients: the roles' cluster APIs answer on
// the internal listener only; a client of the public listener cannot reach
// them.
func TestClusterAPIsAreNotServedToClients(t *testing.T) {
	s := testserver.Start(t)
	q := s.CreateQueue(t, "p1", &dmsv1.Queue{DisplayName: "guarded"})
	s.Send(t, q, "keep me")
	req := &storagev1.DeleteLogsRequest{Logs: []*storagev1.LogId{logid.Partition(q.GetId(), 0)}}
	_, err := storagev1.NewStorageServiceClient(s.Conn).DeleteLogs(context.Background(), req)
	require.Equal(t, codes.Unimplemented, status.Code(err), "%v", err)
	info, err := storagev1.NewStorageServiceClient(s.Internal).GetLogInfo(context.Background(), &storagev1.GetLogInfoRequest{Logs: []*storagev1.LogId{logid.Partition(q.GetId(), 0)}})
	require.NoError(t, err)
	require.Len(t, info.GetLogs(), 1)
}
