package metadata_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

func TestCreateQueueValidation(t *testing.T) {
	s := testserver.Start(t)
	s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "taken"})
	tests := []struct {
		name   string
		parent string
		queue  *dmsv1.Queue
		reason string
	}{
		{"empty name", "projects/p", &dmsv1.Queue{}, "QUEUE_NAME_LENGTH_INVALID"},
		{"long name", "projects/p", &dmsv1.Queue{DisplayName: strings.Repeat("a", 65)}, "QUEUE_NAME_LENGTH_INVALID"},
		{"bad chars", "projects/p", &dmsv1.Queue{DisplayName: "a b"}, "QUEUE_NAME_INVALID"},
		{"uuid-shaped name", "projects/p", &dmsv1.Queue{DisplayName: "9bf46390-38a2-462d-b392-4d5b2d519c55"}, "QUEUE_NAME_INVALID"},
		{"duplicate", "projects/p", &dmsv1.Queue{DisplayName: "taken"}, "QUEUE_ALREADY_EXISTS"},
		{"description chars", "projects/p", &dmsv1.Queue{DisplayName: "d", Description: "<b>"}, "DESCRIPTION_INVALID"},
		{"description length", "projects/p", &dmsv1.Queue{DisplayName: "d", Description: strings.Repeat("x", 161)}, "DESCRIPTION_TOO_LONG"},
		{"fifo partitions", "projects/p", &dmsv1.Queue{DisplayName: "f", Mode: dmsv1.QueueMode_QUEUE_MODE_FIFO, PartitionCount: 2}, "PARTITION_COUNT_INVALID"},
		{"too many partitions", "projects/p", &dmsv1.Queue{DisplayName: "n", PartitionCount: 65}, "PARTITION_COUNT_INVALID"},
		{"unknown mode", "projects/p", &dmsv1.Queue{DisplayName: "m", Mode: 42}, "QUEUE_MODE_INVALID"},
		{"retention too long", "projects/p", &dmsv1.Queue{DisplayName: "r", Retention: durationpb.New(73 * time.Hour)}, "RETENTION_INVALID"},
		{"max consume count", "projects/p", &dmsv1.Queue{DisplayName: "c", DeadLetterEnabled: true, MaxConsumeCount: 101}, "MAX_CONSUME_COUNT_INVALID"},
		{"bad parent", "p", &dmsv1.Queue{DisplayName: "x"}, "RESOURCE_NAME_INVALID"},
		{"bad project", "projects/a b", &dmsv1.Queue{DisplayName: "x"}, "PROJECT_INVALID"},
		{"label key", "projects/p", &dmsv1.Queue{DisplayName: "l", Labels: map[string]string{"a|b": "v"}}, "LABEL_INVALID"},
		{"label value", "projects/p", &dmsv1.Queue{DisplayName: "l", Labels: map[string]string{"k": strings.Repeat("v", 44)}}, "LABEL_INVALID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Queues().CreateQueue(context.Background(), &dmsv1.CreateQueueRequest{Parent: tt.parent, Queue: tt.queue})
			require.Equal(t, tt.reason, rpcstatus.Reason(err), "%v", err)
		})
	}
	list, err := s.Queues().ListQueues(context.Background(), &dmsv1.ListQueuesRequest{Parent: "projects/p"})
	require.NoError(t, err)
	require.Len(t, list.GetQueues(), 1, "no invalid request created anything")
}

func TestQueueLifecycleAndLookupByIDOrName(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders", Description: "d"})
	require.EqualValues(t, 3, q.GetPartitionCount())
	require.Equal(t, 72*time.Hour, q.GetRetention().AsDuration())
	for _, name := range []string{q.GetName(), "projects/p/queues/orders"} {
		got, err := s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: name})
		require.NoError(t, err)
		require.Equal(t, q.GetId(), got.GetQueue().GetId())
	}
	_, err := s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: "projects/other/queues/" + q.GetId()})
	require.Equal(t, "QUEUE_NOT_FOUND", rpcstatus.Reason(err), "a queue is invisible from another project")

	s.CreateGroup(t, q, "g")
	s.Send(t, q, "a", "b")
	got, err := s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	require.EqualValues(t, 2, got.GetQueue().GetMessageCount())
	require.EqualValues(t, 1, got.GetQueue().GetGroupCount())

	queueDir := filepath.Join(s.DataDir, "storage", "q", q.GetId())
	require.DirExists(t, queueDir)
	_, err = s.Queues().DeleteQueue(ctx, &dmsv1.DeleteQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	_, err = s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	require.Equal(t, "QUEUE_NOT_FOUND", rpcstatus.Reason(err))
	require.Eventually(t, func() bool { _, err := os.Stat(queueDir); return os.IsNotExist(err) }, 10*time.Second, 10*time.Millisecond, "the queue's data is deleted")

	again := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "orders"})
	require.NotEqual(t, q.GetId(), again.GetId(), "the name is free again")
}

func TestQuotas(t *testing.T) {
	s := testserver.Start(t, testserver.WithFlags("-metadata.max-queues-per-project=2"))
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "q1"})
	s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "q2"})
	_, err := s.Queues().CreateQueue(ctx, &dmsv1.CreateQueueRequest{Parent: "projects/p", Queue: &dmsv1.Queue{DisplayName: "q3"}})
	require.Equal(t, "QUEUE_QUOTA_EXCEEDED", rpcstatus.Reason(err))
	s.CreateQueue(t, "other", &dmsv1.Queue{DisplayName: "q3"}) // quotas are per project

	for _, name := range []string{"g1", "g2", "g3"} {
		s.CreateGroup(t, q, name)
	}
	_, err = s.Queues().CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g4"}})
	require.Equal(t, "GROUP_QUOTA_EXCEEDED", rpcstatus.Reason(err))
	_, err = s.Queues().CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g1"}})
	require.Equal(t, "GROUP_QUOTA_EXCEEDED", rpcstatus.Reason(err), "the quota is checked first")

	_, err = s.Queues().DeleteConsumerGroup(ctx, &dmsv1.DeleteConsumerGroupRequest{Name: q.GetName() + "/groups/g1"})
	require.NoError(t, err)
	_, err = s.Queues().CreateConsumerGroup(ctx, &dmsv1.CreateConsumerGroupRequest{Parent: q.GetName(), Group: &dmsv1.ConsumerGroup{DisplayName: "g2"}})
	require.Equal(t, "GROUP_ALREADY_EXISTS", rpcstatus.Reason(err))
	s.CreateGroup(t, q, "g4")
	groups, err := s.Queues().ListConsumerGroups(ctx, &dmsv1.ListConsumerGroupsRequest{Parent: q.GetName()})
	require.NoError(t, err)
	var names []string
	for _, g := range groups.GetGroups() {
		names = append(names, g.GetDisplayName())
	}
	require.Equal(t, []string{"g2", "g3", "g4"}, names)
}

func TestListQueuesPages(t *testing.T) {
	s := testserver.Start(t)
	for _, n := range []string{"a", "b", "c"} {
		s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: n})
	}
	var names []string
	token := ""
	for {
		resp, err := s.Queues().ListQueues(context.Background(), &dmsv1.ListQueuesRequest{Parent: "projects/p", PageSize: 2, PageToken: token})
		require.NoError(t, err)
		require.EqualValues(t, 3, resp.GetTotalSize())
		for _, q := range resp.GetQueues() {
			names = append(names, q.GetDisplayName())
		}
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Equal(t, []string{"a", "b", "c"}, names)
	_, err := s.Queues().ListQueues(context.Background(), &dmsv1.ListQueuesRequest{Parent: "projects/p", PageToken: "zz"})
	require.Equal(t, "PAGE_TOKEN_INVALID", rpcstatus.Reason(err))
}

// TestQueueLabels: labels set at creation and changed with
// UpdateQueueLabels, which removes before it sets, in one change that
// either happens whole or not at all.
func TestQueueLabels(t *testing.T) {
	s := testserver.Start(t)
	ctx := context.Background()
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "labelled", Labels: map[string]string{"env": "dev", "team": "a"}})
	require.Equal(t, map[string]string{"env": "dev", "team": "a"}, q.GetLabels())

	resp, err := s.Queues().UpdateQueueLabels(ctx, &dmsv1.UpdateQueueLabelsRequest{
		Name: "projects/p/queues/labelled", Set: map[string]string{"env": "prod", "cost": ""}, Remove: []string{"team"},
	})
	require.NoError(t, err)
	want := map[string]string{"env": "prod", "cost": ""}
	require.Equal(t, want, resp.GetQueue().GetLabels())
	got, err := s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	require.Equal(t, want, got.GetQueue().GetLabels())

	eleven := map[string]string{}
	for i := 0; i < 9; i++ {
		eleven[strings.Repeat("k", i+1)] = "v"
	}
	tests := []struct {
		name   string
		req    *dmsv1.UpdateQueueLabelsRequest
		reason string
	}{
		{"missing key", &dmsv1.UpdateQueueLabelsRequest{Name: q.GetName(), Remove: []string{"team"}}, "LABEL_NOT_FOUND"},
		{"set and removed", &dmsv1.UpdateQueueLabelsRequest{Name: q.GetName(), Set: map[string]string{"env": "x"}, Remove: []string{"env"}}, "LABEL_INVALID"},
		{"bad key", &dmsv1.UpdateQueueLabelsRequest{Name: q.GetName(), Set: map[string]string{"": "x"}}, "LABEL_INVALID"},
		{"more than 10", &dmsv1.UpdateQueueLabelsRequest{Name: q.GetName(), Set: eleven}, "LABEL_LIMIT_EXCEEDED"},
		{"unknown queue", &dmsv1.UpdateQueueLabelsRequest{Name: "projects/p/queues/nope", Set: map[string]string{"k": "v"}}, "QUEUE_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Queues().UpdateQueueLabels(ctx, tt.req)
			require.Equal(t, tt.reason, rpcstatus.Reason(err), "%v", err)
		})
	}
	got, err = s.Queues().GetQueue(ctx, &dmsv1.GetQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	require.Equal(t, want, got.GetQueue().GetLabels(), "refused changes change nothing")

	_, err = s.Queues().UpdateQueueLabels(ctx, &dmsv1.UpdateQueueLabelsRequest{Name: q.GetName(), Remove: []string{"team", "cost"}, AllowMissing: true})
	require.NoError(t, err)
}
