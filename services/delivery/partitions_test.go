package delivery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

// TestReceiveFromSomePartitions receives with the partitions field: only
// messages of those partitions come, the others stay for receives without
// it; a partition the queue does not have matches nothing.
func TestReceiveFromSomePartitions(t *testing.T) {
	srv := testserver.Start(t)
	q := srv.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "parts", PartitionCount: 4})
	g := srv.CreateGroup(t, q, "g")
	for i := range 40 {
		srv.Send(t, q, fmt.Sprint(i))
	}
	receive := func(partitions ...int32) []*dmsv1.ReceivedMessage {
		resp, err := srv.Consumer().ReceiveMessages(context.Background(), &dmsv1.ReceiveMessagesRequest{Group: g.GetName(), MaxMessages: 100,
			WaitTime: durationpb.New(100 * time.Millisecond), Partitions: partitions})
		require.NoError(t, err)
		return resp.GetMessages()
	}
	require.Empty(t, receive(7, -1))
	some := receive(1, 3)
	require.NotEmpty(t, some)
	for _, m := range some {
		require.Contains(t, []int32{1, 3}, m.GetPartition())
	}
	rest := receive()
	require.Len(t, append(some, rest...), 40)
	for _, m := range rest {
		require.Contains(t, []int32{0, 2}, m.GetPartition())
	}
}
