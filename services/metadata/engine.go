package metadata

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	metadatav1 "github.com/opendms/dms/gen/go/dms/cluster/metadata/v1"
	dmsv1 "github.com/opendms/dms/gen/go/dms/v1"
	"github.com/opendms/dms/services/catalog"
	"github.com/opendms/dms/services/errs"
	"github.com/opendms/dms/services/placement"
)

// Engine creates and deletes catalog entries. Every change is one etcd
// transaction guarded by a counter key, so that quotas and name uniqueness
// hold with any number of metadata processes; a queue's partitions are
// placed on nodes in the transaction that creates it.
type Engine struct {
	cfg       Config
	cli       *clientv3.Client
	cache     *catalog.Cache
	placement *placement.Cache
	now       func() time.Time
	logger    *slog.Logger
}

// NewEngine returns an engine over an etcd client, the catalog cache and the
// placement cache.
func NewEngine(cfg Config, cli *clientv3.Client, cache *catalog.Cache, placements *placement.Cache, now func() time.Time, logger *slog.Logger) *Engine {
	return &Engine{cfg: cfg, cli: cli, cache: cache, placement: placements, now: now, logger: logger}
}

// QueueSpec is what a client asks for when creating a queue.
type QueueSpec struct {
	DisplayName       string
	Description       string
	Mode              dmsv1.QueueMode
	PartitionCount    int32
	Retention         time.Duration // 0: default
	DeadLetterEnabled bool
	MaxConsumeCount   int32
	// ReplicationFactor 0 takes the default.
	ReplicationFactor int32
	Labels            map[string]string
}

func (e *Engine) validateQueue(spec QueueSpec) (*metadatav1.QueueRecord, error) {
	if err := catalog.ValidateQueueDisplayName(spec.DisplayName); err != nil {
		return nil, err
	}
	if len([]rune(spec.Description)) > 160 {
		return nil, errs.Wrapf(errs.ErrDescriptionTooLong, "description must be at most 160 characters, got %d", len([]rune(spec.Description)))
	}
	if strings.ContainsAny(spec.Description, "<>") {
		return nil, errs.Wrapf(errs.ErrDescriptionInvalid, "description must not contain '<' or '>'")
	}
	mode := spec.Mode
	if mode == dmsv1.QueueMode_QUEUE_MODE_UNSPECIFIED {
		mode = dmsv1.QueueMode_QUEUE_MODE_NORMAL
	}
	if _, known := dmsv1.QueueMode_name[int32(mode)]; !known {
		return nil, errs.Wrapf(errs.ErrQueueModeInvalid, "unknown queue mode %d", mode)
	}
	partitions := spec.PartitionCount
	switch {
	case mode == dmsv1.QueueMode_QUEUE_MODE_FIFO && partitions > 1:
		return nil, errs.Wrapf(errs.ErrPartitionCountInvalid, "a FIFO queue has exactly one partition, not %d", partitions)
	case mode == dmsv1.QueueMode_QUEUE_MODE_FIFO:
		partitions = 1
	case partitions == 0:
		partitions = int32(e.cfg.DefaultPartitions)
	case partitions < 0 || int(partitions) > e.cfg.MaxPartitions:
		return nil, errs.Wrapf(errs.ErrPartitionCountInvalid, "partition count must be 1 to %d, got %d", e.cfg.MaxPartitions, partitions)
	}
	retention := spec.Retention
	if retention == 0 {
		retention = e.cfg.DefaultRetention
	}
	if retention < time.Hour || retention > e.cfg.DefaultRetention {
		return nil, errs.Wrapf(errs.ErrRetentionInvalid, "retention must be between 1h and %s, got %s", e.cfg.DefaultRetention, retention)
	}
	if spec.DeadLetterEnabled && (spec.MaxConsumeCount < 1 || spec.MaxConsumeCount > 100) {
		return nil, errs.Wrapf(errs.ErrMaxConsumeCountInvalid, "max_consume_count must be 1 to 100 when dead letters are enabled, got %d", spec.MaxConsumeCount)
	}
	rf := spec.ReplicationFactor
	if rf == 0 {
		rf = int32(e.cfg.DefaultReplicationFactor)
	}
	if rf < 1 || rf > maxReplicationFactor {
		return nil, errs.Wrapf(errs.ErrReplicationInvalid, "replication factor must be 1 to %d, got %d", maxReplicationFactor, rf)
	}
	if err := catalog.ValidateLabels(spec.Labels); err != nil {
		return nil, err
	}
	return &metadatav1.QueueRecord{
		Labels:            spec.Labels,
		ReplicationFactor: rf,
		KeyPartitions:     partitions,
		DisplayName:       spec.DisplayName,
		Description:       spec.Description,
		Mode:              mode,
		PartitionCount:    partitions,
		RetentionMs:       retention.Milliseconds(),
		DeadLetterEnabled: spec.DeadLetterEnabled,
		MaxConsumeCount:   spec.MaxConsumeCount,
	}, nil
}

// maxReplicationFactor bounds the copies of a partition: more cost writes
// and buy nothing a cluster of one region needs.
const maxReplicationFactor = 7

// CreateQueue validates spec, places the queue's partitions on nodes and
// adds the queue to the catalog, in one transaction.
func (e *Engine) CreateQueue(ctx context.Context, project string, spec QueueSpec) (*metadatav1.QueueRecord, error) {
	rec, err := e.validateQueue(spec)
	if err != nil {
		return nil, err
	}
	rec.Id = catalog.NewQueueID()
	rec.Project = project
	rec.CreateTimeMs = e.now().UnixMilli()
	value, err := proto.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("metadata: encoding queue: %w", err)
	}
	placements, err := e.placePartitions(rec, 0)
	if err != nil {
		return nil, err
	}
	nameKey := catalog.QueueNameKey(project, rec.GetDisplayName())
	quotas, _ := e.EffectiveQuotas(project)
	limit := int(quotas.GetMaxQueues())
	err = e.counterTxn(ctx, catalog.QueueCountKey(project), +1, limit,
		errs.Wrapf(errs.ErrQueueQuotaExceeded, "project %q already has the maximum of %d queues (its quota; an operator raises it with UpdateProjectQuotas)", project, limit),
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(nameKey), "=", 0)},
		errs.Wrapf(errs.ErrQueueAlreadyExists, "a queue named %q already exists in project %q", rec.GetDisplayName(), project),
		append([]clientv3.Op{
			clientv3.OpPut(nameKey, rec.GetId()),
			clientv3.OpPut(catalog.QueueKey(rec.GetId()), string(value)),
		}, placements...)...,
	)
	if err != nil {
		return nil, err
	}
	e.logger.Info("queue created", "project", project, "queue", rec.GetDisplayName(), "id", rec.GetId(), "mode", rec.GetMode().String(),
		"partitions", rec.GetPartitionCount(), "replication_factor", rec.GetReplicationFactor())
	return rec, nil
}

// DeleteQueue removes a queue and its groups from the catalog and leaves a
// tombstone; the storage and delivery roles delete their data when their
// watch sees it go, or, for a node that was down, when they find the
// tombstone.
func (e *Engine) DeleteQueue(ctx context.Context, q *metadatav1.QueueRecord) error {
	tombstone, err := e.tombstone(ctx, catalog.DeletedQueueKey(q.GetId()))
	if err != nil {
		return err
	}
	err = e.counterTxn(ctx, catalog.QueueCountKey(q.GetProject()), -1, 0, nil,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(catalog.QueueKey(q.GetId())), ">", 0)},
		errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found", q.GetId()),
		clientv3.OpDelete(catalog.QueueKey(q.GetId())),
		clientv3.OpDelete(catalog.QueueNameKey(q.GetProject(), q.GetDisplayName())),
		clientv3.OpDelete(catalog.GroupsOfQueuePrefix(q.GetId()), clientv3.WithPrefix()),
		clientv3.OpDelete(catalog.GroupNamesOfQueuePrefix(q.GetId()), clientv3.WithPrefix()),
		clientv3.OpDelete(catalog.GroupCountKey(q.GetId())),
		clientv3.OpDelete(placement.QueuePlacementPrefix(q.GetId()), clientv3.WithPrefix()),
		tombstone,
	)
	if err == nil {
		e.logger.Info("queue deleted", "project", q.GetProject(), "queue", q.GetDisplayName(), "id", q.GetId())
	}
	return err
}

// placePartitions chooses replicas for the partitions of q from index
// `from` on, and returns the writes of their placements.
func (e *Engine) placePartitions(q *metadatav1.QueueRecord, from int32) ([]clientv3.Op, error) {
	nodes, load := e.placement.Nodes(), e.placement.Load()
	minInsync := placement.MinInsyncFor(int(q.GetReplicationFactor()), e.cfg.MinInsyncReplicas)
	var ops []clientv3.Op
	for p := from; p < q.GetPartitionCount(); p++ {
		replicas, err := placement.ChooseReplicas(nodes, load, int(q.GetReplicationFactor()))
		if err != nil {
			return nil, err
		}
		u := placement.PartitionUnit(q.GetId(), p)
		value, err := proto.Marshal(placement.NewPartitionState(u, replicas, minInsync))
		if err != nil {
			return nil, fmt.Errorf("metadata: encoding placement: %w", err)
		}
		ops = append(ops, clientv3.OpPut(placement.PlacementKey(u), string(value)))
	}
	return ops, nil
}

// AddPartitions raises the partition count of q to n and places the new
// partitions, in one transaction that fails if the queue changed
// meanwhile. Keys keep their partitions: ingest spreads them over the
// key_partitions the queue was created with.
func (e *Engine) AddPartitions(ctx context.Context, q *metadatav1.QueueRecord, n int32) (*metadatav1.QueueRecord, error) {
	switch q.GetMode() {
	case dmsv1.QueueMode_QUEUE_MODE_NORMAL, dmsv1.QueueMode_QUEUE_MODE_KAFKA_HA, dmsv1.QueueMode_QUEUE_MODE_KAFKA_HT:
	default:
		return nil, errs.Wrapf(errs.ErrPartitionCountInvalid, "a %s queue keeps its partitions; only NORMAL and Kafka queues get more", strings.TrimPrefix(q.GetMode().String(), "QUEUE_MODE_"))
	}
	if n <= q.GetPartitionCount() || int(n) > e.cfg.MaxPartitions {
		return nil, errs.Wrapf(errs.ErrPartitionCountInvalid, "the new partition count must be %d to %d, got %d", q.GetPartitionCount()+1, e.cfg.MaxPartitions, n)
	}
	key := catalog.QueueKey(q.GetId())
	resp, err := e.cli.Get(ctx, key)
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found", q.GetId())
	}
	cur := &metadatav1.QueueRecord{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, cur); err != nil {
		return nil, fmt.Errorf("metadata: decoding queue: %w", err)
	}
	if n <= cur.GetPartitionCount() {
		return nil, errs.Wrapf(errs.ErrPartitionCountInvalid, "the queue has %d partitions already", cur.GetPartitionCount())
	}
	next := proto.CloneOf(cur)
	next.PartitionCount = n
	if next.GetKeyPartitions() == 0 {
		next.KeyPartitions = cur.GetPartitionCount() // a queue from before partitions could be added
	}
	if next.GetReplicationFactor() == 0 {
		next.ReplicationFactor = 1
	}
	placements, err := e.placePartitions(next, cur.GetPartitionCount())
	if err != nil {
		return nil, err
	}
	value, err := proto.Marshal(next)
	if err != nil {
		return nil, err
	}
	txn, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
		Then(append([]clientv3.Op{clientv3.OpPut(key, string(value))}, placements...)...).Commit()
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: writing etcd: %v", err)
	}
	if !txn.Succeeded {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: queue %s changed meanwhile; try again", q.GetId())
	}
	if err := e.cache.WaitForRevision(ctx, txn.Header.Revision); err != nil {
		return nil, err
	}
	if err := e.placement.WaitForRevision(ctx, txn.Header.Revision); err != nil {
		return nil, err
	}
	e.logger.Info("partitions added", "queue", q.GetId(), "from", cur.GetPartitionCount(), "to", n)
	return next, nil
}

// UpdateLabels removes the labels of q with the keys in remove, then sets
// those of set, in one transaction that fails if the queue changed
// meanwhile. A key to remove that q does not have fails with
// ErrLabelNotFound unless allowMissing.
func (e *Engine) UpdateLabels(ctx context.Context, q *metadatav1.QueueRecord, set map[string]string, remove []string, allowMissing bool) (*metadatav1.QueueRecord, error) {
	for k, v := range set {
		if err := catalog.ValidateLabelKey(k); err != nil {
			return nil, err
		}
		if err := catalog.ValidateLabelValue(k, v); err != nil {
			return nil, err
		}
	}
	for _, k := range remove {
		if _, ok := set[k]; ok {
			return nil, errs.Wrapf(errs.ErrLabelInvalid, "label %q is both set and removed", k)
		}
	}
	key := catalog.QueueKey(q.GetId())
	resp, err := e.cli.Get(ctx, key)
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found", q.GetId())
	}
	cur := &metadatav1.QueueRecord{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, cur); err != nil {
		return nil, fmt.Errorf("metadata: decoding queue: %w", err)
	}
	next := proto.CloneOf(cur)
	if next.Labels == nil {
		next.Labels = map[string]string{}
	}
	for _, k := range remove {
		if _, ok := next.Labels[k]; !ok && !allowMissing {
			return nil, errs.Wrapf(errs.ErrLabelNotFound, "queue %s has no label %q", q.GetId(), k)
		}
		delete(next.Labels, k)
	}
	for k, v := range set {
		next.Labels[k] = v
	}
	if len(next.Labels) > catalog.MaxLabels {
		return nil, errs.Wrapf(errs.ErrLabelLimitExceeded, "a queue has at most %d labels; the change would give it %d", catalog.MaxLabels, len(next.Labels))
	}
	value, err := proto.Marshal(next)
	if err != nil {
		return nil, err
	}
	txn, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: writing etcd: %v", err)
	}
	if !txn.Succeeded {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: queue %s changed meanwhile; try again", q.GetId())
	}
	if err := e.cache.WaitForRevision(ctx, txn.Header.Revision); err != nil {
		return nil, err
	}
	return next, nil
}

// tombstone returns the write of a tombstone key under a lease of
// catalog.TombstoneTTL, so that the catalog forgets it in time.
func (e *Engine) tombstone(ctx context.Context, key string) (clientv3.Op, error) {
	lease, err := e.cli.Grant(ctx, int64(catalog.TombstoneTTL/time.Second))
	if err != nil {
		return clientv3.Op{}, errs.Wrapf(errs.ErrUnavailable, "metadata: granting the tombstone lease: %v", err)
	}
	return clientv3.OpPut(key, strconv.FormatInt(e.now().UnixMilli(), 10), clientv3.WithLease(lease.ID)), nil
}

// Members returns the dmsd processes registered in etcd.
func (e *Engine) Members(ctx context.Context) ([]*metadatav1.Member, error) {
	resp, err := e.cli.Get(ctx, placement.MembersPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	var out []*metadatav1.Member
	for _, kv := range resp.Kvs {
		m := &metadatav1.Member{}
		if err := proto.Unmarshal(kv.Value, m); err != nil {
			e.logger.Warn("metadata: undecodable member record", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// CreateGroup adds a consumer group to a queue.
func (e *Engine) CreateGroup(ctx context.Context, q *metadatav1.QueueRecord, displayName string) (*metadatav1.GroupRecord, error) {
	if err := catalog.ValidateGroupDisplayName(displayName); err != nil {
		return nil, err
	}
	rec := &metadatav1.GroupRecord{
		Id:           catalog.NewGroupID(),
		QueueId:      q.GetId(),
		DisplayName:  displayName,
		CreateTimeMs: e.now().UnixMilli(),
	}
	value, err := proto.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("metadata: encoding group: %w", err)
	}
	nameKey := catalog.GroupNameKey(q.GetId(), displayName)
	quotas, _ := e.EffectiveQuotas(q.GetProject())
	limit := int(quotas.GetMaxGroupsPerQueue())
	err = e.counterTxn(ctx, catalog.GroupCountKey(q.GetId()), +1, limit,
		errs.Wrapf(errs.ErrGroupQuotaExceeded, "queue %q already has the maximum of %d consumer groups (its project's quota)", q.GetDisplayName(), limit),
		[]clientv3.Cmp{
			clientv3.Compare(clientv3.CreateRevision(nameKey), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(catalog.QueueKey(q.GetId())), ">", 0),
		},
		errs.Wrapf(errs.ErrGroupAlreadyExists, "a consumer group named %q already exists on queue %q (or the queue was deleted)", displayName, q.GetDisplayName()),
		clientv3.OpPut(nameKey, rec.GetId()),
		clientv3.OpPut(catalog.GroupKey(q.GetId(), rec.GetId()), string(value)),
	)
	if err != nil {
		return nil, err
	}
	e.logger.Info("consumer group created", "queue", q.GetId(), "group", displayName, "id", rec.GetId())
	return rec, nil
}

// DeleteGroup removes a consumer group from the catalog and leaves a
// tombstone (see DeleteQueue).
func (e *Engine) DeleteGroup(ctx context.Context, q *metadatav1.QueueRecord, g *metadatav1.GroupRecord) error {
	tombstone, err := e.tombstone(ctx, catalog.DeletedGroupKey(q.GetId(), g.GetId()))
	if err != nil {
		return err
	}
	err = e.counterTxn(ctx, catalog.GroupCountKey(q.GetId()), -1, 0, nil,
		[]clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(catalog.GroupKey(q.GetId(), g.GetId())), ">", 0)},
		errs.Wrapf(errs.ErrGroupNotFound, "consumer group %q not found", g.GetId()),
		clientv3.OpDelete(catalog.GroupKey(q.GetId(), g.GetId())),
		clientv3.OpDelete(catalog.GroupNameKey(q.GetId(), g.GetDisplayName())),
		tombstone,
	)
	if err == nil {
		e.logger.Info("consumer group deleted", "queue", q.GetId(), "group", g.GetDisplayName(), "id", g.GetId())
	}
	return err
}

// errCounterMoved asks counterTxn to read the counter again.
var errCounterMoved = errors.New("metadata: counter moved")

// counterTxn applies ops together with a change of delta to a counter key,
// provided the counter did not move since it was read, stays within limit
// (when delta > 0) and every cmp holds. A failed cmp returns condErr.
func (e *Engine) counterTxn(ctx context.Context, counterKey string, delta, limit int, limitErr error,
	cmps []clientv3.Cmp, condErr error, ops ...clientv3.Op) error {
	for {
		err := e.tryCounterTxn(ctx, counterKey, delta, limit, limitErr, cmps, condErr, ops)
		if !errors.Is(err, errCounterMoved) {
			return err
		}
	}
}

func (e *Engine) tryCounterTxn(ctx context.Context, counterKey string, delta, limit int, limitErr error,
	cmps []clientv3.Cmp, condErr error, ops []clientv3.Op) error {
	resp, err := e.cli.Get(ctx, counterKey)
	if err != nil {
		return errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	count, modRev := 0, int64(0)
	if len(resp.Kvs) > 0 {
		count, _ = strconv.Atoi(string(resp.Kvs[0].Value))
		modRev = resp.Kvs[0].ModRevision
	}
	if delta > 0 && count+delta > limit {
		return limitErr
	}
	next := max(count+delta, 0)
	guard := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(counterKey), "=", modRev)}, cmps...)
	txn, err := e.cli.Txn(ctx).If(guard...).Then(append(ops, clientv3.OpPut(counterKey, strconv.Itoa(next)))...).Commit()
	if err != nil {
		return errs.Wrapf(errs.ErrUnavailable, "metadata: writing etcd: %v", err)
	}
	if txn.Succeeded {
		// Read-your-writes: lists and lookups served from this process's
		// caches must show the change before the client hears of it.
		if err := e.cache.WaitForRevision(ctx, txn.Header.Revision); err != nil {
			return err
		}
		return e.placement.WaitForRevision(ctx, txn.Header.Revision)
	}
	// Tell a moved counter from a failed condition by asking again.
	check, err := e.cli.Txn(ctx).If(cmps...).Commit()
	if err != nil {
		return errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	if !check.Succeeded {
		return condErr
	}
	return errCounterMoved
}

// QueueUpdate is what UpdateQueue may change; nil fields stay.
type QueueUpdate struct {
	Description       *string
	Retention         *time.Duration
	DeadLetterEnabled *bool
	MaxConsumeCount   *int32
}

// UpdateQueue changes the settings of a queue that may change while it is
// in use, in one transaction that fails if the queue changed meanwhile.
func (e *Engine) UpdateQueue(ctx context.Context, q *metadatav1.QueueRecord, u QueueUpdate) (*metadatav1.QueueRecord, error) {
	key := catalog.QueueKey(q.GetId())
	resp, err := e.cli.Get(ctx, key)
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: reading etcd: %v", err)
	}
	if len(resp.Kvs) == 0 {
		return nil, errs.Wrapf(errs.ErrQueueNotFound, "queue %q not found", q.GetId())
	}
	cur := &metadatav1.QueueRecord{}
	if err := proto.Unmarshal(resp.Kvs[0].Value, cur); err != nil {
		return nil, fmt.Errorf("metadata: decoding queue: %w", err)
	}
	spec := QueueSpec{
		DisplayName: cur.GetDisplayName(), Description: cur.GetDescription(), Mode: cur.GetMode(), PartitionCount: cur.GetPartitionCount(),
		Retention: time.Duration(cur.GetRetentionMs()) * time.Millisecond, DeadLetterEnabled: cur.GetDeadLetterEnabled(),
		MaxConsumeCount: cur.GetMaxConsumeCount(), ReplicationFactor: max(cur.GetReplicationFactor(), 1),
	}
	if u.Description != nil {
		spec.Description = *u.Description
	}
	if u.Retention != nil {
		if *u.Retention == 0 {
			return nil, errs.Wrapf(errs.ErrRetentionInvalid, "retention must be between 1h and %s, got 0", e.cfg.DefaultRetention)
		}
		spec.Retention = *u.Retention
	}
	if u.DeadLetterEnabled != nil {
		spec.DeadLetterEnabled = *u.DeadLetterEnabled
	}
	if u.MaxConsumeCount != nil {
		if *u.MaxConsumeCount < 0 || *u.MaxConsumeCount > 100 {
			return nil, errs.Wrapf(errs.ErrMaxConsumeCountInvalid, "max_consume_count must be 0 to 100, got %d", *u.MaxConsumeCount)
		}
		spec.MaxConsumeCount = *u.MaxConsumeCount
	}
	if cur.GetMode() == dmsv1.QueueMode_QUEUE_MODE_FIFO {
		spec.PartitionCount = 0 // validateQueue sets FIFO's one partition; an added count is not its business
	} else if int(spec.PartitionCount) > e.cfg.MaxPartitions {
		spec.PartitionCount = int32(e.cfg.MaxPartitions) // a queue from a cluster with a higher maximum keeps its partitions
	}
	checked, err := e.validateQueue(spec)
	if err != nil {
		return nil, err
	}
	next := proto.CloneOf(cur)
	next.Description, next.RetentionMs = checked.GetDescription(), checked.GetRetentionMs()
	next.DeadLetterEnabled, next.MaxConsumeCount = checked.GetDeadLetterEnabled(), checked.GetMaxConsumeCount()
	if proto.Equal(next, cur) {
		return cur, nil
	}
	value, err := proto.Marshal(next)
	if err != nil {
		return nil, err
	}
	txn, err := e.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", resp.Kvs[0].ModRevision)).
		Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: writing etcd: %v", err)
	}
	if !txn.Succeeded {
		return nil, errs.Wrapf(errs.ErrUnavailable, "metadata: queue %s changed meanwhile; try again", q.GetId())
	}
	if err := e.cache.WaitForRevision(ctx, txn.Header.Revision); err != nil {
		return nil, err
	}
	e.logger.Info("queue updated", "queue", q.GetId(), "description", next.GetDescription(), "retention_ms", next.GetRetentionMs(),
		"dead_letter_enabled", next.GetDeadLetterEnabled(), "max_consume_count", next.GetMaxConsumeCount())
	return next, nil
}
