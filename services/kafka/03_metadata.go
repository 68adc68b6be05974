package kafka

// Metadata (key 3): versions 0-12.
//
// Topics are the project's KAFKA_HA and KAFKA_HT queues (topics.go).
// Brokers are the cluster's members that run a Kafka listener, each with
// the address it advertises and its zone as rack. A partition's replicas,
// in-sync replicas and leader epoch are the placement's. Its leader is
// the storage leader when that node runs a Kafka listener; otherwise the
// node answering, which forwards what it is sent to the storage leader
// (any node serves any partition). A partition without a leader right now
// (a failover) is LEADER_NOT_AVAILABLE, which clients retry. Naming an
// unknown topic creates it when auto-creation is on and the request allows
// it (v4+; always before v4, as in Kafka).

import (
	"context"
	"net"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
)

func init() { register(kmsg.Metadata.Int16(), 0, 12, (*Server).metadata) }

func (s *Server) metadata(ctx context.Context, r *request, req *kmsg.MetadataRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	brokers := s.brokers()
	for _, b := range brokers {
		resp.Brokers = append(resp.Brokers, b.MetadataResponseBroker)
	}
	if info := s.deps.Placement.Info(); info != nil {
		id := info.GetClusterId()
		resp.ClusterID = &id
	}
	// The controller of a DMS cluster is an etcd election, not a broker
	// clients talk to; this node takes admin requests as well as any.
	resp.ControllerID = brokerID(s.deps.Node)
	project := s.project(r)
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		for _, q := range s.topics(ctx, project) {
			resp.Topics = append(resp.Topics, s.topicMetadata(q, brokers))
		}
		return resp, nil
	}
	autoCreate := req.Version < 4 || req.AllowAutoTopicCreation
	for _, t := range req.Topics {
		var q *metadatav1.QueueRecord
		var err error
		switch {
		case t.Topic == nil:
			q, err = s.topicByID(ctx, project, t.TopicID)
		case autoCreate:
			q, err = s.topicOrCreate(ctx, project, *t.Topic)
		default:
			q, err = s.topic(ctx, project, *t.Topic)
		}
		if err != nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.TopicID, mt.ErrorCode = t.Topic, t.TopicID, errorCode(err)
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		resp.Topics = append(resp.Topics, s.topicMetadata(q, brokers))
	}
	return resp, nil
}

// broker is a member with a Kafka listener.
type broker struct {
	kmsg.MetadataResponseBroker
	node string
}

// brokers returns the members that serve Kafka, this node included even
// before its registration is visible.
func (s *Server) brokers() map[string]broker {
	out := map[string]broker{}
	add := func(node, addr, zone string) {
		host, portStr, err := net.SplitHostPort(addr)
		port, perr := strconv.Atoi(portStr)
		if err != nil || perr != nil {
			s.logger.Warn("kafka: a member advertises a Kafka address that is not HOST:PORT", "node", node, "addr", addr)
			return
		}
		b := broker{MetadataResponseBroker: kmsg.NewMetadataResponseBroker(), node: node}
		b.NodeID, b.Host, b.Port = brokerID(node), host, int32(port)
		if zone != "" {
			b.Rack = &zone
		}
		for _, other := range out {
			if other.NodeID == b.NodeID && other.node != node {
				s.logger.Error("kafka: two nodes have the same broker id; rename one", "node", node, "other", other.node, "broker_id", b.NodeID)
			}
		}
		out[node] = b
	}
	for _, n := range s.deps.Placement.Nodes() {
		if m, ok := s.deps.Placement.Member(n.Name); ok && m.GetKafkaAddress() != "" {
			add(n.Name, m.GetKafkaAddress(), m.GetZone())
		}
	}
	if _, ok := out[s.deps.Node]; !ok {
		zone := ""
		if m, ok := s.deps.Placement.Member(s.deps.Node); ok {
			zone = m.GetZone()
		}
		add(s.deps.Node, s.advertised, zone)
	}
	return out
}

// topicMetadata describes a topic's partitions from the placement.
func (s *Server) topicMetadata(q *metadatav1.QueueRecord, brokers map[string]broker) kmsg.MetadataResponseTopic {
	mt := kmsg.NewMetadataResponseTopic()
	name := q.GetDisplayName()
	mt.Topic, mt.TopicID = &name, topicID(q)
	for p := range q.GetPartitionCount() {
		mp := kmsg.NewMetadataResponseTopicPartition()
		mp.Partition = p
		st, ok := s.deps.Placement.Unit(placement.PartitionUnit(q.GetId(), p))
		if !ok || st.GetLeader() == "" {
			mp.ErrorCode, mp.Leader = kerr.LeaderNotAvailable.Code, -1
		} else {
			mp.Leader = brokerID(st.GetLeader())
			if _, serves := brokers[st.GetLeader()]; !serves {
				mp.Leader = brokerID(s.deps.Node)
			}
			mp.LeaderEpoch = int32(st.GetLeaderEpoch())
		}
		for _, n := range st.GetReplicas() {
			mp.Replicas = append(mp.Replicas, brokerID(n))
			if !s.deps.Placement.Alive(n) {
				mp.OfflineReplicas = append(mp.OfflineReplicas, brokerID(n))
			}
		}
		for _, n := range st.GetIsr() {
			mp.ISR = append(mp.ISR, brokerID(n))
		}
		if mp.Replicas == nil {
			mp.Replicas, mp.ISR = []int32{}, []int32{}
		}
		mt.Partitions = append(mt.Partitions, mp)
	}
	return mt
}
