package kafka

// DescribeConfigs (key 32): versions 0-4.
//
// Topics report the configs a DMS queue honestly has in Kafka's terms
// (topicconfig.go): cleanup.policy=delete, dms.queue.mode,
// max.message.bytes, message.timestamp.type=CreateTime,
// min.insync.replicas and retention.ms, all read-only (AlterConfigs is not
// served: a queue's mode and retention do not change through Kafka).
// Brokers report what this node's Kafka front end is configured with:
// auto.create.topics.enable, message.max.bytes and
// dms.default.queue.mode. Other resource types are INVALID_REQUEST.
// Synonyms are not listed; documentation is given from v3.

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func init() { register(kmsg.DescribeConfigs.Int16(), 0, 4, (*Server).describeConfigs) }

func (s *Server) describeConfigs(ctx context.Context, r *request, req *kmsg.DescribeConfigsRequest) (kmsg.Response, error) {
	resp := req.ResponseKind().(*kmsg.DescribeConfigsResponse)
	project := s.project(r)
	for _, res := range req.Resources {
		rr := kmsg.NewDescribeConfigsResponseResource()
		rr.ResourceType, rr.ResourceName = res.ResourceType, res.ResourceName
		var configs []topicConfig
		var err error
		source := kmsg.ConfigSourceDynamicTopicConfig
		switch res.ResourceType {
		case kmsg.ConfigResourceTypeTopic:
			q, terr := s.topic(ctx, project, res.ResourceName)
			if err = terr; err == nil {
				configs = s.topicConfigs(q)
			}
		case kmsg.ConfigResourceTypeBroker:
			source = kmsg.ConfigSourceStaticBrokerConfig
			configs = []topicConfig{
				{name: "auto.create.topics.enable", value: strconv.FormatBool(s.cfg.AutoCreateTopics), typ: kmsg.ConfigTypeBoolean,
					doc: "Producing to or asking metadata of an unknown topic creates it (-kafka.auto-create-topics)."},
				{name: "dms.default.queue.mode", value: s.cfg.DefaultTopicMode, typ: kmsg.ConfigTypeString,
					doc: "Queue mode of topics created without dms.queue.mode (-kafka.default-topic-mode)."},
				{name: "message.max.bytes", value: strconv.Itoa(s.cfg.MaxMessageBytes), typ: kmsg.ConfigTypeInt,
					doc: "The largest record batch a producer may send (-kafka.max-message-bytes)."},
			}
		default:
			err = fmt.Errorf("%w: resource type %s has no configs on DMS; describe topics or brokers", kerr.InvalidRequest, res.ResourceType)
		}
		if err != nil {
			rr.ErrorCode, rr.ErrorMessage = errorCode(err), errorMessage(err)
			resp.Resources = append(resp.Resources, rr)
			continue
		}
		for _, c := range configs {
			if res.ConfigNames != nil && !slices.Contains(res.ConfigNames, c.name) {
				continue
			}
			rc := kmsg.NewDescribeConfigsResponseResourceConfig()
			rc.Name, rc.Value, rc.ReadOnly, rc.IsDefault, rc.ConfigType = c.name, &c.value, true, c.isDefault, c.typ
			rc.Source = source
			if c.isDefault {
				rc.Source = kmsg.ConfigSourceDefaultConfig
			}
			if req.IncludeDocumentation {
				rc.Documentation = &c.doc
			}
			rr.Configs = append(rr.Configs, rc)
		}
		resp.Resources = append(resp.Resources, rr)
	}
	return resp, nil
}
