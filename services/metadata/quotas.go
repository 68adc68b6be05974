package metadata

import (
	"context"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/message"
)

// Bounds of what a project's quotas may be set to. Queues and groups are
// catalog entries in etcd, watched by every node: ten thousand queues per
// project and a hundred groups per queue keep the catalog of a busy
// cluster within tens of megabytes. A message larger than the server's own
// limit could not be stored by the other front ends.
const (
	maxQueueQuota = 10000
	maxGroupQuota = 100
)

// EffectiveQuotas returns the quotas in force for a project: its own where
// set, the server's defaults otherwise, and which fields are its own.
func (e *Engine) EffectiveQuotas(project string) (*dmsv1.ProjectQuotas, []string) {
	own := e.cache.ProjectQuotas(project)
	q := &dmsv1.ProjectQuotas{
		MaxQueues:         int32(e.cfg.MaxQueuesPerProject),
		MaxGroupsPerQueue: int32(e.cfg.MaxGroupsPerQueue),
		MaxMessageBytes:   message.MaxBytes,
	}
	var set []string
	if own == nil {
		return q, set
	}
	if v := own.GetMaxQueues(); v > 0 {
		q.MaxQueues, set = v, append(set, "max_queues")
	}
	if v := own.GetMaxGroupsPerQueue(); v > 0 {
		q.MaxGroupsPerQueue, set = v, append(set, "max_groups_per_queue")
	}
	if v := own.GetMaxMessageBytes(); v > 0 {
		q.MaxMessageBytes, set = v, append(set, "max_message_bytes")
	}
	if v := own.GetSendMessagesPerSecond(); v > 0 {
		q.SendMessagesPerSecond, set = v, append(set, "send_messages_per_second")
	}
	if v := own.GetSendBytesPerSecond(); v > 0 {
		q.SendBytesPerSecond, set = v, append(set, "send_bytes_per_second")
	}
	if v := own.GetMaxStoredBytes(); v > 0 {
		q.MaxStoredBytes, set = v, append(set, "max_stored_bytes")
	}
	return q, set
}

// QueuesUsed returns how many queues a project has, by its quota counter.
func (e *Engine) QueuesUsed(ctx context.Context, project string) (int32, error) {
	resp, err := e.cli.Get(ctx, catalog.QueueCountKey(project))
	if err != nil {
		return 0, errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	n, _ := strconv.Atoi(string(resp.Kvs[0].Value))
	return int32(n), nil
}

// SetProjectQuotas validates and stores a project's own quotas.
func (e *Engine) SetProjectQuotas(ctx context.Context, project string, q *dmsv1.ProjectQuotas) error {
	if q == nil {
		return errs.Wrapf(errs.ErrRequestInvalid, "quotas is required; send every field, 0 for the server's default")
	}
	for _, c := range []struct {
		name     string
		v, limit int64
	}{
		{"max_queues", int64(q.GetMaxQueues()), maxQueueQuota},
		{"max_groups_per_queue", int64(q.GetMaxGroupsPerQueue()), maxGroupQuota},
		{"max_message_bytes", int64(q.GetMaxMessageBytes()), message.MaxBytes},
		{"send_messages_per_second", q.GetSendMessagesPerSecond(), 1 << 40},
		{"send_bytes_per_second", q.GetSendBytesPerSecond(), 1 << 50},
		{"max_stored_bytes", q.GetMaxStoredBytes(), 1 << 60},
	} {
		if c.v < 0 || c.v > c.limit {
			return errs.Wrapf(errs.ErrRequestInvalid, "quotas.%s is %d; use 0 (the server's default) to %d", c.name, c.v, c.limit)
		}
	}
	value, err := proto.Marshal(q)
	if err != nil {
		return fmt.Errorf("metadata: encoding quotas: %w", err)
	}
	resp, err := e.cli.Put(ctx, catalog.QuotaKey(project), string(value))
	if err != nil {
		return errs.Wrapf(errs.ErrUnavailable, "metadata: writing etcd: %v", err)
	}
	// The caller reads its own write, here and on every node it asks next
	// after a moment.
	return e.cache.WaitForRevision(ctx, resp.Header.Revision)
}
