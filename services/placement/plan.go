package placement

import (
	"cmp"
	"slices"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/errs"
)

// Node is what placement decisions know of a member.
type Node struct {
	Name  string
	Zone  string
	Roles []string
}

// Has reports whether the node runs a role.
func (n Node) Has(role string) bool { return slices.Contains(n.Roles, role) }

// Load counts what each node carries, by node name.
type Load struct {
	Replicas map[string]int
	Leaders  map[string]int
	Owned    map[string]int
}

// NewLoad returns an empty load.
func NewLoad() Load {
	return Load{Replicas: map[string]int{}, Leaders: map[string]int{}, Owned: map[string]int{}}
}

// Add counts a unit's placement.
func (l Load) Add(st *metadatav1.PartitionState) {
	for _, r := range st.GetReplicas() {
		l.Replicas[r]++
	}
	if st.GetLeader() != "" {
		l.Leaders[st.GetLeader()]++
	}
	if st.GetOwner() != "" {
		l.Owned[st.GetOwner()]++
	}
}

// ChooseReplicas picks rf of the nodes running the storage role for a new
// unit: spread over zones first, then the least loaded, and puts first the
// one leading the fewest units, which becomes the leader. The load is
// updated, so that consecutive calls (the partitions of one queue) spread.
func ChooseReplicas(nodes []Node, load Load, rf int) ([]string, error) {
	var candidates []Node
	for _, n := range nodes {
		if n.Has("storage") {
			candidates = append(candidates, n)
		}
	}
	if rf < 1 {
		return nil, errs.Wrapf(errs.ErrReplicationInvalid, "a replication factor must be at least 1, got %d", rf)
	}
	if len(candidates) < rf {
		return nil, errs.Wrapf(errs.ErrReplicationInvalid, "a replication factor of %d needs %d storage nodes; the cluster has %d alive", rf, rf, len(candidates))
	}
	less := func(a, b Node) int {
		return cmp.Or(cmp.Compare(load.Replicas[a.Name], load.Replicas[b.Name]), cmp.Compare(load.Leaders[a.Name], load.Leaders[b.Name]), cmp.Compare(a.Name, b.Name))
	}
	byZone := map[string][]Node{}
	for _, n := range candidates {
		byZone[n.Zone] = append(byZone[n.Zone], n)
	}
	chosenIn := map[string]int{}
	var chosen []Node
	for len(chosen) < rf {
		// The zone with the fewest chosen so far, then with the least loaded
		// node left.
		var best string
		var bestNode *Node
		for zone, ns := range byZone {
			if len(ns) == 0 {
				continue
			}
			slices.SortFunc(ns, less)
			if bestNode == nil || chosenIn[zone] < chosenIn[best] || (chosenIn[zone] == chosenIn[best] && less(ns[0], *bestNode) < 0) {
				best, bestNode = zone, &ns[0]
			}
		}
		chosen = append(chosen, *bestNode)
		chosenIn[best]++
		byZone[best] = byZone[best][1:]
	}
	leader := slices.MinFunc(chosen, func(a, b Node) int {
		return cmp.Or(cmp.Compare(load.Leaders[a.Name], load.Leaders[b.Name]), less(a, b))
	})
	names := []string{leader.Name}
	for _, n := range chosen {
		if n.Name != leader.Name {
			names = append(names, n.Name)
		}
	}
	for _, n := range names {
		load.Replicas[n]++
	}
	load.Leaders[leader.Name]++
	return names, nil
}

// NewPartitionState is the placement of a unit just created on replicas:
// empty logs are in sync on every replica, the first leads in epoch 1.
func NewPartitionState(u Unit, replicas []string, minInsync int32) *metadatav1.PartitionState {
	return &metadatav1.PartitionState{
		Unit: u, Replicas: replicas, Leader: replicas[0], LeaderEpoch: 1,
		Isr: slices.Clone(replicas), MinInsync: minInsync,
	}
}

// MinInsyncFor is the minimum number of in-sync replicas for a replication
// factor: the configured one, but never more than the replicas there are,
// so that a unit with fewer replicas than the cluster default still takes
// writes while all of them are in sync.
func MinInsyncFor(rf, configured int) int32 {
	return int32(max(1, min(rf, configured)))
}

// ChooseLeader picks a new leader among the in-sync replicas that are
// alive, in the order of preference of the replica list; "" when none is.
func ChooseLeader(st *metadatav1.PartitionState, alive func(node string) bool) string {
	for _, r := range st.GetReplicas() {
		if slices.Contains(st.GetIsr(), r) && alive(r) {
			return r
		}
	}
	return ""
}

// ChooseOwner picks the owner of a coordination unit among the alive nodes
// running role: its leader when that node runs the role (the owner then
// writes its logs without crossing the network), otherwise the node owning
// the fewest units; "" when no node runs the role.
func ChooseOwner(st *metadatav1.PartitionState, nodes []Node, role string, load Load) string {
	var candidates []Node
	for _, n := range nodes {
		if n.Has(role) {
			candidates = append(candidates, n)
		}
	}
	for _, n := range candidates {
		if n.Name == st.GetLeader() {
			return n.Name
		}
	}
	if len(candidates) == 0 {
		return ""
	}
	best := slices.MinFunc(candidates, func(a, b Node) int {
		return cmp.Or(cmp.Compare(load.Owned[a.Name], load.Owned[b.Name]), cmp.Compare(a.Name, b.Name))
	})
	return best.Name
}
