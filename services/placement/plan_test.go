package placement

import (
	"testing"

	"github.com/stretchr/testify/require"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/errs"
)

var all = []string{"storage", "delivery", "scheduler"}

func TestChooseReplicasSpreadsZonesThenLoad(t *testing.T) {
	nodes := []Node{
		{Name: "a1", Zone: "a", Roles: all}, {Name: "a2", Zone: "a", Roles: all},
		{Name: "b1", Zone: "b", Roles: all}, {Name: "c1", Zone: "c", Roles: all},
		{Name: "x", Zone: "a", Roles: []string{"delivery"}}, // no storage: never a replica
	}
	load := NewLoad()
	got, err := ChooseReplicas(nodes, load, 3)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"a1", "b1", "c1"}, got, "one per zone")

	// The next units go to the least loaded nodes of each zone, and their
	// leaders rotate.
	leaders := map[string]int{got[0]: 1}
	for range 5 {
		got, err = ChooseReplicas(nodes, load, 3)
		require.NoError(t, err)
		zones := map[string]bool{}
		for _, n := range got {
			zones[n[:1]] = true
		}
		require.Len(t, zones, 3, "%v spans three zones", got)
		leaders[got[0]]++
	}
	for n, c := range leaders {
		require.LessOrEqual(t, c, 2, "leader %s leads %d of 6", n, c)
	}
	require.Equal(t, load.Replicas["a1"]+load.Replicas["a2"], 6, "zone a holds one replica of each unit")
	require.InDelta(t, load.Replicas["a1"], load.Replicas["a2"], 1)
}

func TestChooseReplicasWithoutZonesAndTooFewNodes(t *testing.T) {
	nodes := []Node{{Name: "n1", Roles: all}, {Name: "n2", Roles: all}}
	got, err := ChooseReplicas(nodes, NewLoad(), 2)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"n1", "n2"}, got)
	_, err = ChooseReplicas(nodes, NewLoad(), 3)
	require.ErrorIs(t, err, errs.ErrReplicationInvalid)
	require.ErrorContains(t, err, "needs 3 storage nodes; the cluster has 2")
}

func TestChooseLeaderTakesTheFirstAliveInSyncReplica(t *testing.T) {
	st := &metadatav1.PartitionState{Replicas: []string{"a", "b", "c"}, Isr: []string{"c", "b"}}
	alive := map[string]bool{"a": true, "b": false, "c": true}
	require.Equal(t, "c", ChooseLeader(st, func(n string) bool { return alive[n] }), "a is not in sync, b is dead")
	alive["c"] = false
	require.Equal(t, "", ChooseLeader(st, func(n string) bool { return alive[n] }), "no clean choice")
}

func TestChooseOwnerPrefersTheLeader(t *testing.T) {
	nodes := []Node{{Name: "a", Roles: all}, {Name: "b", Roles: []string{"storage"}}, {Name: "c", Roles: []string{"delivery"}}}
	load := NewLoad()
	require.Equal(t, "a", ChooseOwner(&metadatav1.PartitionState{Leader: "a"}, nodes, "delivery", load))
	load.Owned["a"] = 3
	require.Equal(t, "c", ChooseOwner(&metadatav1.PartitionState{Leader: "b"}, nodes, "delivery", load), "b does not run delivery; c owns less")
	require.Equal(t, "", ChooseOwner(&metadatav1.PartitionState{Leader: "b"}, nodes, "metadata", load))
}

func TestUnitKeysRoundTrip(t *testing.T) {
	for _, u := range []Unit{PartitionUnit("0b7e1f5c-5a4e-4b8e-9f0e-1c2d3e4f5a6b", 7), DeliveryShard(3), SchedulerShard(0)} {
		back, ok := ParseUnitKey(UnitKey(u))
		require.True(t, ok, UnitKey(u))
		require.Equal(t, UnitKey(u), UnitKey(back))
	}
	_, ok := ParseUnitKey("z/1")
	require.False(t, ok)
}
