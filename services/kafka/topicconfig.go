package kafka

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	"github.com/opendms/dms/services/placement"
)

// Topic configs are what a DMS queue honestly has in Kafka's terms, and
// only those: DescribeConfigs reports them, CreateTopics takes them. Every
// one is read-only once the topic exists (a queue's mode, partitions'
// placement and retention do not change through the Kafka API), and the
// fixed ones are taken at creation only with the value they have anyway.
const (
	configQueueMode    = "dms.queue.mode"
	configRetention    = "retention.ms"
	configMaxMessage   = "max.message.bytes"
	configMinInsync    = "min.insync.replicas"
	configCleanup      = "cleanup.policy"
	configTimestamp    = "message.timestamp.type"
	cleanupDelete      = "delete"
	timestampCreateTim = "CreateTime"
)

// topicConfig is one config of a topic as DescribeConfigs reports it.
type topicConfig struct {
	name, value string
	isDefault   bool
	typ         kmsg.ConfigType
	doc         string
}

// topicConfigs returns the configs of a topic, in name order.
func (s *Server) topicConfigs(q *metadatav1.QueueRecord) []topicConfig {
	minInsync := int32(1)
	if st, ok := s.deps.Placement.Unit(placement.PartitionUnit(q.GetId(), 0)); ok {
		minInsync = max(st.GetMinInsync(), 1)
	}
	return []topicConfig{
		{name: configCleanup, value: cleanupDelete, isDefault: true, typ: kmsg.ConfigTypeList,
			doc: "Old data is deleted by retention; DMS has no compacted topics."},
		{name: configQueueMode, value: modeName(q.GetMode()), isDefault: false, typ: kmsg.ConfigTypeString,
			doc: "The DMS queue mode: KAFKA_HA (a produce is answered once durable on the in-sync replicas) or KAFKA_HT (once written on the leader)."},
		{name: configMaxMessage, value: strconv.Itoa(s.cfg.MaxMessageBytes), isDefault: true, typ: kmsg.ConfigTypeInt,
			doc: "The largest record batch a producer may send (-kafka.max-message-bytes)."},
		{name: configTimestamp, value: timestampCreateTim, isDefault: true, typ: kmsg.ConfigTypeString,
			doc: "Records keep the timestamps their producer gave them."},
		{name: configMinInsync, value: strconv.Itoa(int(minInsync)), isDefault: true, typ: kmsg.ConfigTypeInt,
			doc: "In-sync replicas a partition needs to take writes (from the placement)."},
		{name: configRetention, value: strconv.FormatInt(q.GetRetentionMs(), 10), isDefault: false, typ: kmsg.ConfigTypeLong,
			doc: "How long records are kept (the queue's retention)."},
	}
}

// parseCreateConfigs reads the configs of a CreateTopics topic into spec.
func (s *Server) parseCreateConfigs(spec *topicSpec, configs []kmsg.CreateTopicsRequestTopicConfig) error {
	mode, _ := parseTopicMode(s.cfg.DefaultTopicMode)
	spec.mode = mode
	for _, c := range configs {
		if c.Value == nil {
			continue // "use the default"
		}
		v := strings.TrimSpace(*c.Value)
		fixed := func(want string) error {
			if !strings.EqualFold(v, want) {
				return fmt.Errorf("%w: %s is %s on DMS topics, not %q", kerr.InvalidConfig, c.Name, want, v)
			}
			return nil
		}
		var err error
		switch c.Name {
		case configQueueMode:
			spec.mode, err = parseTopicMode(v)
			if err != nil {
				err = fmt.Errorf("%w: %s: %v", kerr.InvalidConfig, c.Name, err)
			}
		case configRetention:
			ms, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil || ms <= 0 {
				// Kafka's -1 (keep forever) has no DMS equivalent: queues
				// have a bounded retention.
				err = fmt.Errorf("%w: retention.ms %q: give a positive number of milliseconds (DMS queues keep data for a bounded time)", kerr.InvalidConfig, v)
			}
			spec.retentionMs = ms
		case configCleanup:
			err = fixed(cleanupDelete)
		case configTimestamp:
			err = fixed(timestampCreateTim)
		case configMaxMessage:
			err = fixed(strconv.Itoa(s.cfg.MaxMessageBytes))
		case configMinInsync:
			// Chosen by the placement from the replication factor; taking a
			// value and not keeping it would be a lie.
			err = fmt.Errorf("%w: min.insync.replicas is chosen by DMS from the replication factor; DescribeConfigs shows it", kerr.InvalidConfig)
		default:
			err = fmt.Errorf("%w: DMS topics have no config %q; they have %s, %s, %s, %s, %s and %s", kerr.InvalidConfig, c.Name,
				configQueueMode, configRetention, configCleanup, configMaxMessage, configMinInsync, configTimestamp)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
