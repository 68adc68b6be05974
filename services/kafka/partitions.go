package kafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
)

// leaderEpoch returns a partition's leader epoch from the placement, -1
// when it has no leader right now.
func (s *Server) leaderEpoch(q *metadatav1.QueueRecord, p int32) int32 {
	st, ok := s.deps.Placement.Unit(placement.PartitionUnit(q.GetId(), p))
	if !ok || st.GetLeader() == "" {
		return -1
	}
	return int32(st.GetLeaderEpoch())
}

// checkLeaderEpoch compares the leader epoch a client believes a partition
// has (KIP-320; -1: the client does not say) with the placement's: an
// older one is FENCED_LEADER_EPOCH (the client refreshes its metadata), a
// newer one UNKNOWN_LEADER_EPOCH (this node has not heard of the change
// yet; the client retries).
func (s *Server) checkLeaderEpoch(q *metadatav1.QueueRecord, p, epoch int32) error {
	if err := partitionError(q, p); err != nil {
		return err
	}
	if epoch < 0 {
		return nil
	}
	current := s.leaderEpoch(q, p)
	switch {
	case current < 0:
		return fmt.Errorf("%w: partition %d of %q has no leader right now", kerr.LeaderNotAvailable, p, q.GetDisplayName())
	case epoch < current:
		return fmt.Errorf("%w: partition %d of %q is in leader epoch %d, not %d", kerr.FencedLeaderEpoch, p, q.GetDisplayName(), current, epoch)
	case epoch > current:
		return fmt.Errorf("%w: partition %d of %q is in leader epoch %d here, not yet %d", kerr.UnknownLeaderEpoch, p, q.GetDisplayName(), current, epoch)
	}
	return nil
}
