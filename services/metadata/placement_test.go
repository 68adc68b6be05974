package metadata_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	storagev1 "github.com/opendms/dms/gen/go/dms/cluster/storage/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/rpcstatus"
	"github.com/opendms/dms/services/testserver"
)

// A single node places everything on itself: the queue's partitions in the
// transaction that creates the queue, the delivery and scheduler shards by
// the controller, each shard owned by the node, epoch 1.
func TestSingleNodePlacesEverythingOnItself(t *testing.T) {
	s := testserver.Start(t, testserver.WithFlags("-cluster.delivery-shards", "2", "-cluster.scheduler-shards", "1"))
	q := s.CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "placed", PartitionCount: 3})
	require.EqualValues(t, 1, q.GetReplicationFactor())
	admin := metadatav1.NewMetadataServiceClient(s.Internal)
	var resp *metadatav1.DescribePlacementResponse
	require.Eventually(t, func() bool {
		var err error
		resp, err = admin.DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
		require.NoError(t, err)
		return len(resp.GetUnits()) == 3+2+1
	}, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, s.NodeName, resp.GetController())
	require.EqualValues(t, 2, resp.GetCluster().GetDeliveryShards())
	for _, u := range resp.GetUnits() {
		require.Equal(t, []string{s.NodeName}, u.GetReplicas(), "%v", u)
		require.Equal(t, s.NodeName, u.GetLeader())
		require.EqualValues(t, 1, u.GetLeaderEpoch())
		require.EqualValues(t, 1, u.GetMinInsync())
		if u.GetUnit().GetKind() != storagev1.UnitKind_UNIT_KIND_QUEUE_PARTITION {
			require.Equal(t, s.NodeName, u.GetOwner())
			require.EqualValues(t, 1, u.GetOwnerEpoch())
		}
	}

	// A replication factor the single node cannot give is refused, with
	// nothing created.
	_, err := s.Queues().CreateQueue(context.Background(), &dmsv1.CreateQueueRequest{Parent: "projects/p", Queue: &dmsv1.Queue{DisplayName: "wide", ReplicationFactor: 3}})
	require.Equal(t, "REPLICATION_INVALID", rpcstatus.Reason(err), "%v", err)
	require.ErrorContains(t, err, "needs 3 storage nodes; the cluster has 1")

	// Deleting the queue deletes its placement.
	_, err = s.Queues().DeleteQueue(context.Background(), &dmsv1.DeleteQueueRequest{Name: q.GetName()})
	require.NoError(t, err)
	resp, err = admin.DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{QueueId: q.GetId()})
	require.NoError(t, err)
	require.Empty(t, resp.GetUnits())
}
