package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/testserver"
)

func readyz(t *testing.T, s *testserver.Server) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestReadyzMeansCaughtUp restarts a node after its partitions went on
// without it, and checks that once it says ready it is back in the in-sync
// replicas of everything it keeps a copy of.
func TestReadyzMeansCaughtUp(t *testing.T) {
	_, nodes := startCluster(t, 3)
	for _, n := range nodes {
		code, body := readyz(t, n)
		require.Equal(t, http.StatusOK, code, "%s: %s", n.NodeName, body)
	}
	q := nodes[0].CreateQueue(t, "p", &dmsv1.Queue{DisplayName: "readyz", PartitionCount: 2})
	admin := metadatav1.NewMetadataServiceClient(nodes[0].Internal)
	third := nodes[2]
	name := third.NodeName
	third.RestartWith(t, func() {
		// The partitions go on without it: it leaves their in-sync
		// replicas (-storage.replica-lag-time 2s) while writes come.
		// Sends may fail while the partitions node3 led elect new
		// leaders; the test only needs some to land.
		send := func(body string) error {
			_, err := nodes[0].Producer().SendMessages(context.Background(), &dmsv1.SendMessagesRequest{Queue: q.GetName(), Messages: []*dmsv1.Message{{Body: []byte(body)}}})
			return err
		}
		require.Eventually(t, func() bool {
			_ = send("while node3 is away")
			for _, u := range placementOf(t, nodes[0], q.GetId()) {
				if slices.Contains(u.GetIsr(), name) {
					return false
				}
			}
			return true
		}, 30*time.Second, 200*time.Millisecond, "%s left the in-sync replicas", name)
		sent := 0
		require.Eventually(t, func() bool {
			if send(fmt.Sprintf("m%d", sent)) == nil {
				sent++
			}
			return sent == 50
		}, 30*time.Second, time.Millisecond, "50 sends while node3 is away")
	})
	require.Eventually(t, func() bool { code, _ := readyz(t, third); return code == http.StatusOK }, 60*time.Second, 20*time.Millisecond, "node3 ready again")
	resp, err := admin.DescribePlacement(context.Background(), &metadatav1.DescribePlacementRequest{})
	require.NoError(t, err)
	for _, u := range resp.GetUnits() {
		if slices.Contains(u.GetReplicas(), name) {
			require.Contains(t, u.GetIsr(), name, "node3 said ready while not in sync on %v", u.GetUnit())
		}
	}
}
