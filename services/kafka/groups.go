package kafka

import (
	"net"
	"time"

	"github.com/opendms/dms/services/kafka/groups"
	"github.com/opendms/dms/services/placement"
)

// Consumer groups are served by the groups package: the coordinator of a
// group is the owner of the delivery shard the group hashes to, and its
// state lives in that shard's replicated log (see groups/doc.go). The API
// files of the group keys (08-16, 42, 47) only translate.

// groupOwnership answers the groups coordinator from the placement.
type groupOwnership struct {
	p    *placement.Cache
	node string
}

func (o groupOwnership) Shards() int32 { return o.p.Info().GetDeliveryShards() }

func (o groupOwnership) ShardOwner(shard int32) (int64, string, bool) {
	st, ok := o.p.Unit(placement.DeliveryShard(shard))
	if !ok {
		return 0, "", false
	}
	return st.GetOwnerEpoch(), st.GetOwner(), st.GetOwner() == o.node
}

// newGroupCoordinator builds the coordinator of a server.
func newGroupCoordinator(cfg Config, deps Deps, s *Server) *groups.Coordinator {
	return groups.New(groups.Config{
		InitialRebalanceDelay: cfg.GroupInitialRebalanceDelay,
		MinSessionTimeout:     cfg.GroupMinSessionTimeout,
		MaxSessionTimeout:     cfg.GroupMaxSessionTimeout,
		CheckpointBytes:       cfg.GroupCheckpointBytes,
		OffsetsRetention:      cfg.GroupOffsetsRetention,
	}, deps.Storage, groupOwnership{p: deps.Placement, node: deps.Node}, time.Now, s.logger)
}

// clientHost is a connection's client address as Kafka shows it in
// DescribeGroups: a slash and the IP address.
func clientHost(r *request) string {
	host, _, err := net.SplitHostPort(r.conn.remote)
	if err != nil {
		return "/" + r.conn.remote
	}
	return "/" + host
}

// ms converts Kafka milliseconds.
func ms(n int32) time.Duration { return time.Duration(n) * time.Millisecond }

// deref returns the string a nullable one points to, "" for null.
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// nullable returns nil for "", else a pointer to s.
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
